// The helpers below locate the shared real-hardware attestation test data
// (shared/testdata/attestation, next to the module's root directory) for
// tests. When the data is missing, tests are skipped — except when the
// environment variable CI is "true", where they fail.

package dcaptest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
)

// Rel is the location of the data relative to the directory containing
// go.mod.
const Rel = "../shared/testdata/attestation"

// VerifyTime is a time inside the validity window of the shared collateral
// (2025-06-19T10:56:11Z .. 2025-07-19T10:00:35Z).
var VerifyTime = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)

// Find returns the absolute path of the data directory: it walks up from the
// working directory (the package directory under go test) to the directory
// containing go.mod and resolves Rel against it.
func Find() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, filepath.FromSlash(Rel))
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				return d, nil
			}
			return "", errors.New("testdata: " + d + " not found next to the module root " + dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testdata: no go.mod above the working directory")
		}
		dir = parent
	}
}

func missing(tb testing.TB, err error) {
	tb.Helper()
	testenv.MustRun(tb, "shared attestation test data missing: %v", err)
}

// Dir returns the data directory, or skips (fails when CI=true).
func Dir(tb testing.TB) string {
	tb.Helper()
	d, err := Find()
	if err != nil {
		missing(tb, err)
	}
	return d
}

// Read returns the contents of a file below the data directory, such as
// "sgx-dcap/quote.bin", or skips (fails when CI=true).
func Read(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(tb), filepath.FromSlash(name)))
	if err != nil {
		missing(tb, err)
	}
	return b
}

// ReadOptional returns the file's contents or nil, without skipping; for
// seeding fuzz corpora.
func ReadOptional(name string) []byte {
	d, err := Find()
	if err != nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(name)))
	if err != nil {
		return nil
	}
	return b
}
