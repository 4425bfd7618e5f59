package tsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/teeml/teeml/attest"
)

// fakeConfigfs emulates configfs-tsm on a temporary directory through the
// real file operations: mkdir pre-populates provider, generation, inblob,
// outblob (and auxblob), writes bump generation and inblob writes produce an
// outblob over the written data, rmdir drops the attributes.
type fakeConfigfs struct {
	osFS
	provider string
	aux      []byte // nil: no auxblob attribute
	// report builds the outblob for an inblob; nil uses the provider's shape.
	report func(inblob []byte) []byte
	// interfere bumps generation once more after reading outblob, for the
	// first interfere entries.
	interfere int

	mu      sync.Mutex
	entries []string
	writes  map[string][]byte
}

func (f *fakeConfigfs) Mkdir(p string) error {
	if err := f.osFS.Mkdir(p); err != nil {
		return err
	}
	f.mu.Lock()
	f.entries = append(f.entries, p)
	f.mu.Unlock()
	files := map[string][]byte{"provider": []byte(f.provider + "\n"), "generation": []byte("0\n"), "inblob": nil, "outblob": nil, "privlevel": nil}
	if f.aux != nil {
		files["auxblob"] = nil
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(p, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeConfigfs) Rmdir(p string) error {
	if err := os.RemoveAll(p); err != nil { // configfs drops attributes with the entry
		return err
	}
	return nil
}

func (f *fakeConfigfs) bump(dir string) error {
	g, err := readGeneration(f.osFS, filepath.Join(dir, "generation"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "generation"), []byte(strconv.FormatUint(g+1, 10)+"\n"), 0o600)
}

func (f *fakeConfigfs) WriteFile(p string, b []byte) error {
	if err := f.osFS.WriteFile(p, b); err != nil {
		return err
	}
	f.mu.Lock()
	if f.writes == nil {
		f.writes = map[string][]byte{}
	}
	f.writes[filepath.Base(p)] = bytes.Clone(b)
	f.mu.Unlock()
	dir := filepath.Dir(p)
	if err := f.bump(dir); err != nil {
		return err
	}
	if filepath.Base(p) == "inblob" {
		mk := f.report
		if mk == nil {
			mk = shapes[f.provider]
		}
		if err := os.WriteFile(filepath.Join(dir, "outblob"), mk(b), 0o600); err != nil {
			return err
		}
		if f.aux != nil {
			return os.WriteFile(filepath.Join(dir, "auxblob"), f.aux, 0o600)
		}
	}
	return nil
}

func (f *fakeConfigfs) ReadFile(p string) ([]byte, error) {
	b, err := f.osFS.ReadFile(p)
	if err == nil && filepath.Base(p) == "outblob" {
		f.mu.Lock()
		interfere := f.interfere > 0
		if interfere {
			f.interfere--
		}
		f.mu.Unlock()
		if interfere {
			if err := f.bump(filepath.Dir(p)); err != nil {
				return nil, err
			}
		}
	}
	return b, err
}

func snpReport(inblob []byte) []byte {
	r := make([]byte, snpReportSize)
	binary.LittleEndian.PutUint32(r, 2)
	copy(r[snpRDOffset:], inblob)
	return r
}

func tdxQuote(version uint16) func([]byte) []byte {
	return func(inblob []byte) []byte {
		q := make([]byte, 5000)
		binary.LittleEndian.PutUint16(q, version)
		binary.LittleEndian.PutUint32(q[4:], tdxTEEType)
		off := tdxV4RDOffset
		if version == 5 {
			off = tdxV5RDOffset
		}
		copy(q[off:], inblob)
		return q
	}
}

var shapes = map[string]func([]byte) []byte{
	"sev_guest": snpReport,
	"tdx_guest": tdxQuote(4),
	"arm_cca":   snpReport,
}

func pad(b []byte) []byte {
	out := make([]byte, 64)
	copy(out, b)
	return out
}

func newIssuer(t *testing.T, f *fakeConfigfs) (*Issuer, string) {
	t.Helper()
	root := t.TempDir()
	return &Issuer{Root: root, fs: f}, root
}

func assertCleaned(t *testing.T, root string) {
	t.Helper()
	left, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("report entries left behind: %v", left)
	}
}

func TestIssueSNP(t *testing.T) {
	certs := []byte("cert table bytes")
	f := &fakeConfigfs{provider: "sev_guest", aux: certs}
	iss, root := newIssuer(t, f)
	vmpl := uint8(0)
	iss.PrivLevel = &vmpl
	ev, err := iss.Issue(context.Background(), []byte("nonce"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.TEE != attest.SNP || ev.Simulated || len(ev.Quote) != snpReportSize || !bytes.Equal(ev.Collateral, certs) {
		t.Fatalf("evidence = TEE %s, quote %d bytes, collateral %q", ev.TEE, len(ev.Quote), ev.Collateral)
	}
	if !bytes.Equal(ev.Quote[snpRDOffset:snpRDOffset+64], pad([]byte("nonce"))) {
		t.Fatal("report data not in outblob")
	}
	if !bytes.Equal(f.writes["inblob"], pad([]byte("nonce"))) || string(f.writes["privlevel"]) != "0" {
		t.Fatalf("writes = %q", f.writes)
	}
	if len(f.entries) != 1 || !strings.HasPrefix(filepath.Base(f.entries[0]), "teeml-") {
		t.Fatalf("entries = %v", f.entries)
	}
	assertCleaned(t, root)
}

func TestIssueTDX(t *testing.T) {
	for _, v := range []uint16{4, 5} {
		f := &fakeConfigfs{provider: "tdx_guest", report: tdxQuote(v), aux: []byte("ignored")}
		iss, root := newIssuer(t, f)
		ev, err := iss.Issue(context.Background(), bytes.Repeat([]byte{7}, 64))
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if ev.TEE != attest.TDX || len(ev.Quote) != 5000 || ev.Collateral != nil {
			t.Fatalf("v%d evidence: TEE %s, %d bytes, collateral %q", v, ev.TEE, len(ev.Quote), ev.Collateral)
		}
		if _, ok := f.writes["privlevel"]; ok {
			t.Fatal("privlevel written without PrivLevel")
		}
		assertCleaned(t, root)
	}
}

func TestGenerationRetry(t *testing.T) {
	f := &fakeConfigfs{provider: "sev_guest", interfere: 2}
	iss, root := newIssuer(t, f)
	if _, err := iss.Issue(context.Background(), nil); err != nil {
		t.Fatalf("retry did not recover: %v", err)
	}
	if len(f.entries) != 3 {
		t.Fatalf("%d entries tried, want 3", len(f.entries))
	}
	assertCleaned(t, root)

	f = &fakeConfigfs{provider: "sev_guest", interfere: 100}
	iss, root = newIssuer(t, f)
	_, err := iss.Issue(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "generation went from 0 to 2 over 1 writes: another writer used the report entry") ||
		!strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	assertCleaned(t, root)
}

func TestIssueErrors(t *testing.T) {
	bad := uint8(4)
	cases := []struct {
		name  string
		f     *fakeConfigfs
		rd    []byte
		setup func(iss *Issuer)
		want  string
	}{
		{"long report data", &fakeConfigfs{provider: "sev_guest"}, make([]byte, 65), nil, "report data is 65 bytes"},
		{"privlevel range", &fakeConfigfs{provider: "sev_guest"}, nil, func(i *Issuer) { i.PrivLevel = &bad }, "privlevel 4 out of range"},
		{"unknown provider", &fakeConfigfs{provider: "arm_cca"}, nil, nil, `unsupported provider "arm_cca"`},
		{"stale outblob", &fakeConfigfs{provider: "sev_guest", report: func([]byte) []byte { return snpReport([]byte("old")) }}, []byte("new"), nil, "is not the inblob"},
		{"empty outblob", &fakeConfigfs{provider: "tdx_guest", report: func([]byte) []byte { return nil }}, nil, nil, "tdx outblob is empty"},
		{"short snp", &fakeConfigfs{provider: "sev_guest", report: func(b []byte) []byte { return snpReport(b)[:100] }}, nil, nil, "sev-snp outblob is 100 bytes"},
		{"tdx version", &fakeConfigfs{provider: "tdx_guest", report: tdxQuote(3)}, nil, nil, "version 3 quote"},
		{"tdx tee type", &fakeConfigfs{provider: "tdx_guest", report: func(b []byte) []byte {
			q := tdxQuote(4)(b)
			q[4] = 0
			return q
		}}, nil, nil, "TEE type 0x0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iss, root := newIssuer(t, tc.f)
			if tc.setup != nil {
				tc.setup(iss)
			}
			ev, err := iss.Issue(context.Background(), tc.rd)
			if err == nil {
				t.Fatalf("issued %+v", ev)
			}
			if !strings.HasPrefix(err.Error(), "tsm: ") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q\nwant one line containing %q", err, tc.want)
			}
			assertCleaned(t, root)
		})
	}
}

// TestPlainDirectory runs the real file system code on a directory that
// does not react like configfs: mkdir yields no attributes, so Issue fails
// on provider and still removes its entry.
func TestPlainDirectory(t *testing.T) {
	root := t.TempDir()
	_, err := (&Issuer{Root: root}).Issue(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "tsm: reading provider:") {
		t.Fatalf("err = %v", err)
	}
	assertCleaned(t, root)

	// Pre-populated attributes that a plain directory cannot update: the
	// generation does not move after the inblob write, which must be caught.
	f := &staticFS{files: map[string][]byte{"provider": []byte("sev_guest\n"), "generation": []byte("5\n"), "inblob": nil, "outblob": snpReport(nil)}}
	root = t.TempDir()
	_, err = (&Issuer{Root: root, fs: f}).Issue(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "generation went from 5 to 5 over 1 writes") {
		t.Fatalf("static generation: %v", err)
	}
	assertCleaned(t, root)

	_, err = (&Issuer{Root: filepath.Join(root, "missing")}).Issue(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "configfs-tsm unavailable") {
		t.Fatalf("missing root: %v", err)
	}
}

// staticFS pre-populates every new entry with fixed files and never reacts.
type staticFS struct {
	osFS
	files map[string][]byte
}

func (s *staticFS) Mkdir(p string) error {
	if err := s.osFS.Mkdir(p); err != nil {
		return err
	}
	for name, b := range s.files {
		if err := os.WriteFile(filepath.Join(p, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (s *staticFS) Rmdir(p string) error { return os.RemoveAll(p) }

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	iss, _ := newIssuer(t, &fakeConfigfs{provider: "sev_guest"})
	if _, err := iss.Issue(ctx, nil); err == nil {
		t.Fatal("issued with a canceled context")
	}
}
