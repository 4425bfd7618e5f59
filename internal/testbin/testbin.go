// Package testbin builds the teeml binary for tests that run it as a
// process, once per test binary, and shares one static build between test
// binaries when CI has made it (TEEML_TEST_STATIC_BIN).
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// StaticEnv names a static teeml binary built beforehand (by .ci/run, with
// StaticFlags, from the same tree): the image and CLI tests then share one
// link of the 128 MB binary instead of each making its own.
const StaticEnv = "TEEML_TEST_STATIC_BIN"

// StaticFlags are the go build flags of the static binary, as docs/deploy.md
// builds it.
var StaticFlags = []string{"-trimpath", "-tags", "netgo,osusergo", "-ldflags", `-s -w -linkmode external -extldflags "-static"`}

type binary struct {
	once sync.Once
	path string
	dir  string // removed by Cleanup; empty for a binary given by StaticEnv
	err  error
}

var dynamic, static binary

// Dynamic is teeml as a plain `go build ./cmd/teeml` makes it.
func Dynamic(t testing.TB) string {
	t.Helper()
	return dynamic.get(t, nil, "")
}

// Static is the statically linked teeml of docs/deploy.md (linux/amd64
// only): the image commands then package the very binary that runs them.
func Static(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the static teeml binary is built for linux/amd64 only")
	}
	return static.get(t, StaticFlags, os.Getenv(StaticEnv))
}

func (b *binary) get(t testing.TB, flags []string, given string) string {
	t.Helper()
	b.once.Do(func() {
		if given != "" {
			fi, err := os.Stat(given)
			switch {
			case err != nil:
				b.err = fmt.Errorf("%s=%s: %w", StaticEnv, given, err)
			case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
				b.err = fmt.Errorf("%s=%s: not an executable file", StaticEnv, given)
			default:
				b.path = given
			}
			return
		}
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		if b.dir, err = os.MkdirTemp("", "teeml-test-bin-"); err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(b.dir, "teeml")
		args := append(append([]string{"build"}, flags...), "-o", b.path, "./cmd/teeml")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s ./cmd/teeml: %w\n%s", strings.Join(flags, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// moduleRoot is the directory of go.mod, found from this file's place in the
// tree (internal/testbin).
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("testbin: cannot find its own source file")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("testbin: module root: %w", err)
	}
	return root, nil
}

// Cleanup removes the binaries this test binary built; call it from
// TestMain after m.Run.
func Cleanup() {
	for _, b := range []*binary{&dynamic, &static} {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
}
