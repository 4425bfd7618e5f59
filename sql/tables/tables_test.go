package tables

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"t=a.csv":             {Name: "t", Path: "a.csv"},
		"t=a.csv:csv":         {Name: "t", Path: "a.csv", Format: FormatCSV},
		"t=/x/y:z.s:sealed":   {Name: "t", Path: "/x/y:z.s", Format: FormatSealed},
		"t=c:\\d:other":       {Name: "t", Path: "c:\\d:other"},
		"t=x.parquet:parquet": {Name: "t", Path: "x.parquet", Format: FormatParquet},
	} {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "t", "=a", "t=", "t=:csv", "1t=a", "t x=a", `t"=a`, "t=a\x00b"} {
		if _, err := ParseSpec(in); err == nil {
			t.Errorf("ParseSpec(%q) accepted", in)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"t=a.csv", "t=a:sealed", "lineitem=/d/l.csv.sealed:sealed", "x==:", "é=a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if sp.Path == "" || strings.ContainsRune(sp.Path, 0) {
			t.Fatalf("accepted path %q", sp.Path)
		}
		// The spec round-trips.
		again, err := ParseSpec(sp.Name + "=" + sp.Path + ":" + orDefault(sp.Format))
		if sp.Format != "" && (err != nil || again != sp) {
			t.Fatalf("round trip of %+v: %+v, %v", sp, again, err)
		}
	})
}

func orDefault(f string) string {
	if f == "" {
		return "none"
	}
	return f
}
