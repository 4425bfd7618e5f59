package dcaptest

import (
	"os"
	"path/filepath"
	"testing"
)

// recordTB records what missing() does instead of stopping the test.
type recordTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recordTB) Helper()               {}
func (r *recordTB) Skipf(string, ...any)  { r.skipped = true }
func (r *recordTB) Fatalf(string, ...any) { r.failed = true }

func TestMissingDataSkipsOrFailsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recordTB{TB: t}
	missing(r, os.ErrNotExist)
	if !r.failed || r.skipped {
		t.Errorf("CI=true: failed %v skipped %v, want a failure", r.failed, r.skipped)
	}
	t.Setenv("CI", "")
	r = &recordTB{TB: t}
	missing(r, os.ErrNotExist)
	if r.failed || !r.skipped {
		t.Errorf("CI unset: failed %v skipped %v, want a skip", r.failed, r.skipped)
	}
}

func TestFind(t *testing.T) {
	d, err := Find()
	if err != nil {
		Read(t, "README.md") // skips, or fails under CI=true
		return
	}
	// The directory sits next to the module root.
	if _, err := os.Stat(filepath.Join(d, "..", "..", "..", filepath.Base(moduleRoot(t)), "go.mod")); err != nil {
		t.Errorf("%s is not next to the module root: %v", d, err)
	}
	for _, f := range []string{"README.md", "sgx-dcap/quote.bin", "sgx-dcap/collateral.json", "tdx-dcap/quote.bin", "tdx-dcap/collateral.json"} {
		if len(Read(t, f)) == 0 {
			t.Errorf("%s empty", f)
		}
	}
}

func moduleRoot(t *testing.T) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("no go.mod")
		}
		dir = filepath.Dir(dir)
	}
}
