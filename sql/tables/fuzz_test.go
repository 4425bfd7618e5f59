package tables

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/sql/engine"
)

// FuzzLoadCSV: any bytes as a (decrypted) table either load — and then the
// table answers a count — or fail with one line naming the table, leaving
// no table behind.
func FuzzLoadCSV(f *testing.F) {
	for _, s := range []string{"a,b\n1,x\n2,y\n", "a\n", "", "a,a\n1,2\n", "d\n2024-01-01\n\n", "\ufeffid,v\n1,1.5\n2,\n", "a,b\n1\n", "\"a\nb\",c\n1,2\n"} {
		f.Add([]byte(s))
	}
	e, err := engine.Open(context.Background(), engine.Options{MemoryLimit: "256MB", Threads: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "t.csv")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		_, err := Load(ctx, e, Spec{Name: "t", Path: path, Format: FormatCSV}, nil, Policy{AllowPlaintext: true}, nil)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "table t ("+path+"): ") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q", err)
			}
			if _, qerr := e.Query(ctx, "SELECT count(*) FROM t"); qerr == nil {
				t.Fatal("failed load left table t")
			}
			return
		}
		if _, err := e.Query(ctx, "SELECT count(*) FROM t"); err != nil {
			t.Fatalf("loaded table does not answer: %v", err)
		}
		if err := e.Drop(ctx, "t"); err != nil {
			t.Fatal(err)
		}
	})
}
