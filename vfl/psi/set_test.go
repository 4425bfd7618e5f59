package psi

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestPrepareSpillsAndDedupes(t *testing.T) {
	var b strings.Builder
	want := map[string]bool{}
	for i := range 3000 {
		id := fmt.Sprintf("id-%d", i%1700) // 1300 duplicates
		want[id] = true
		b.WriteString(id + "\n")
	}
	dir := t.TempDir()
	s, err := Prepare(strings.NewReader(b.String()), "gen", PrepareOptions{TempDir: dir, MemoryBudget: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Read != 3000 || s.N != 1700 || s.Duplicates != 1300 {
		t.Fatalf("read %d distinct %d duplicates %d", s.Read, s.N, s.Duplicates)
	}
	sr, err := s.reader()
	if err != nil {
		t.Fatal(err)
	}
	got, err := sr.next(nil, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1700 || len(want) != 1700 {
		t.Fatalf("%d IDs read back", len(got))
	}
	for _, id := range got {
		if !want[id] {
			t.Fatalf("unexpected %q", id)
		}
	}
	// The order is keyed, not the input order nor sorted.
	if slices.IsSorted(got) {
		t.Fatal("set order is plain sorted order, not the HMAC-keyed order")
	}
	// Spill files are unlinked at once: nothing is left in the directory.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestPrepareRefusesBadFile(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"a\n\nb\n", "ids f:2: empty ID"},
		{"a\n\xff\n", "ids f:2: not valid UTF-8"},
		{strings.Repeat("x", MaxIDLen+1) + "\n", "ids f:1: ID of 1025 bytes"},
	} {
		if _, err := Prepare(strings.NewReader(c.in), "f", PrepareOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%q: want %q, got %v", c.in, c.want, err)
		}
	}
}
