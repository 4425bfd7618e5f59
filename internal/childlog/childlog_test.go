package childlog

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLastLine(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ body, want string }{
		{"first\nsecond\n\n  \n", ": second"},
		{"only", ": only"},
		{"\n\n", ""},
		{"", ""},
	} {
		p := filepath.Join(dir, "log")
		if err := os.WriteFile(p, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := LastLine(p); got != c.want {
			t.Errorf("LastLine(%q) = %q, want %q", c.body, got, c.want)
		}
	}
	if got := LastLine(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

func TestSyncWriterKeepsLinesWhole(t *testing.T) {
	var b strings.Builder
	w := &SyncWriter{W: &b}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				w.Write([]byte("0123456789\n"))
			}
		}()
	}
	wg.Wait()
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if l != "0123456789" {
			t.Fatalf("torn line %q", l)
		}
	}
}
