package yamlx

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestErrorFormat(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "p.yaml", Line: 3, Key: "a.b", Reason: "bad"}, "p.yaml:3: a.b: bad"},
		{Error{File: "p.yaml", Key: "a.b", Reason: "bad"}, "p.yaml: a.b: bad"},
		{Error{File: "p.yaml", Line: 3, Reason: "bad"}, "p.yaml:3: bad"},
		{Error{Line: 3, Key: "k", Reason: "bad"}, "line 3: k: bad"},
		{Error{Reason: "bad"}, "bad"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
	e := Errorf("f", 1, "k", "cannot read: %w\nsecond line", fs.ErrNotExist)
	if !errors.Is(e, fs.ErrNotExist) || e.Error() != "f:1: k: cannot read: file does not exist; second line" {
		t.Errorf("Errorf: %q, cause %v", e, e.Err)
	}
}

type doc struct {
	Name string `yaml:"name"`
	Sub  struct {
		N int `yaml:"n"`
	} `yaml:"sub"`
	List []int `yaml:"list"`
}

func TestDecode(t *testing.T) {
	var d doc
	lines, err := Decode([]byte("name: x\nsub:\n  n: 2\nlist: [1]\n"), "d.yaml", "doc", 100, &d)
	if err != nil || d.Name != "x" || d.Sub.N != 2 || lines["sub.n"] != 3 || lines["sub"] != 2 {
		t.Fatalf("%+v %v %v", d, lines, err)
	}
	for _, c := range []struct{ in, want string }{
		{"", "d.yaml: doc is empty"},
		{"# c\n", "d.yaml: doc is empty"},
		{"name: x\nbogus: 1\n", "d.yaml:2: bogus: unknown key (not part of the doc format)"},
		{"sub:\n  n: 1\n  m: 2\n", "d.yaml:3: sub.m: unknown key (not part of the doc format)"},
		{"name: x\nname: y\n", "d.yaml:2: name: duplicate key"},
		{"sub:\n  n: many\n", "d.yaml:2: sub.n: cannot unmarshal !!str `many` into int"},
		{"name: &a x\nlist: *a\n", "d.yaml:1: YAML anchors and aliases are not supported"},
		{"name: x\n---\nname: y\n", "d.yaml:2: more than one YAML document"},
		{"name: [\n", "d.yaml:"},
		{"1: x\n", "d.yaml:1: keys must be strings, got an integer"},
		{strings.Repeat("#", 101), "d.yaml: doc is 101 bytes, at most 100"},
	} {
		var d doc
		_, err := Decode([]byte(c.in), "d.yaml", "doc", 100, &d)
		var e *Error
		if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
}

func TestWalker(t *testing.T) {
	root, err := Document([]byte("a:\n  b: 1\n  c: [x, y]\n"), "w.yaml", "w", 0)
	if err != nil {
		t.Fatal(err)
	}
	w := &Walker{File: "w.yaml", Lines: map[string]int{}, Root: "w"}
	var got []string
	err = w.Mapping(root, "", []Field{{Key: "a", Required: true, Parse: func(key string, v *yaml.Node) error {
		return w.Mapping(v, key, []Field{
			{Key: "b", Parse: func(key string, v *yaml.Node) error { got = append(got, key); return nil }},
			{Key: "c", Parse: func(key string, v *yaml.Node) error {
				return w.Sequence(v, key, 2, func(key string, item *yaml.Node) error { got = append(got, key); return nil })
			}},
			{Key: "d", Required: true, Parse: func(string, *yaml.Node) error { return nil }},
		})
	}}})
	if err == nil || err.Error() != "w.yaml:2: a.d: missing" {
		t.Fatalf("got %v", err)
	}
	if strings.Join(got, " ") != "a.b a.c[0] a.c[1]" || w.Line("a.c[1].z") != 3 || w.Line("a.b") != 2 || w.Line("q") != 0 {
		t.Fatalf("keys %v lines %v", got, w.Lines)
	}
	err = w.Mapping(root, "", []Field{{Key: "x"}})
	if err == nil || err.Error() != "w.yaml:1: a: unknown key (known in w: x)" {
		t.Fatalf("unknown key: %v", err)
	}
}

// FuzzDecode: strict decoding of untrusted bytes never panics and its
// errors are one line, typed.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: x\nsub:\n  n: 2\nlist: [1]\n"))
	f.Add([]byte("name: &a x\nlist: *a\n"))
	f.Add([]byte("<<: {name: x}\n"))
	f.Add([]byte("\"a\\nb\": 1\n"))
	f.Add([]byte("name: x\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		_, err := Decode(data, "fuzz.yaml", "doc", 1<<16, &d)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("error %T %q", err, err)
		}
	})
}

// TestReadFileCap: the one YAML file reader refuses a file over its cap,
// naming the file and the cap, without reading it whole; at the cap it
// reads; a cap ≤ 0 is MaxSize; a missing file keeps its fs error.
func TestReadFileCap(t *testing.T) {
	dir := t.TempDir()
	at := filepath.Join(dir, "at.yaml")
	if err := os.WriteFile(at, bytes.Repeat([]byte("#"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(at, "doc", 100); err != nil || len(b) != 100 {
		t.Fatalf("at the cap: %d bytes, %v", len(b), err)
	}
	_, err := ReadFile(at, "doc", 99)
	if err == nil || err.Error() != at+": doc is larger than 99 bytes (the size cap)" || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the cap: %v", err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30) // sparse 1 GiB
	f.Close()
	if _, err := ReadFile(huge, "plan", 0); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("plan is larger than %d bytes", MaxSize)) {
		t.Fatalf("default cap: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.yaml"), "plan", 0); !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "plan: ") {
		t.Fatalf("missing: %v", err)
	}
	if _, err := Document(bytes.Repeat([]byte("#"), MaxSize+1), "d.yaml", "doc", 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Document default cap: %v", err)
	}
}
