package workspace

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzEntryName: every archive path Import accepts stays inside the
// destination.
func FuzzEntryName(f *testing.F) {
	for _, s := range []string{"plan/plan.yaml", "../x", "/etc/passwd", "a/../../b", "plan/", "C:/x", `a\..\b`, "./a", "a//b", "a/./b", "..", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := checkEntryName(name)
		if err != nil {
			return
		}
		if !filepath.IsLocal(filepath.FromSlash(rel)) || strings.Contains(rel, "..") && slices.Contains(strings.Split(rel, "/"), "..") {
			t.Fatalf("%q accepted as %q, not local", name, rel)
		}
	})
}

// FuzzParseCollaborators: accepted lists have valid, unique names and
// round-trip through MarshalCollaborators.
func FuzzParseCollaborators(f *testing.F) {
	f.Add([]byte("collaborators: []\n"))
	f.Add([]byte("\"a\\nb\": 1\n"))
	f.Add([]byte("collaborators:\n  - {name: a, data: shard:0, \"x\\ny\": 1}\n"))
	f.Add(MarshalCollaborators([]Collaborator{{"a", "shard:0"}, {"b", "data/b.csv"}}))
	f.Add([]byte("collaborators:\n  - name: a\n    data: shard:0\n  - name: a\n    data: shard:1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cols, err := ParseCollaborators(data, "cols.yaml")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		again, err := ParseCollaborators(MarshalCollaborators(cols), "cols.yaml")
		if err != nil || !slices.Equal(again, cols) {
			t.Fatalf("round trip: %v\n%v\n%v", err, cols, again)
		}
	})
}
