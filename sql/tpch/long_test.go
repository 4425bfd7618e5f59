package tpch

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/teeml/teeml/sql/engine"
)

// TestSF1 (TEEML_LONG_TESTS=1; about 90 s, 3.8 GB peak RSS and 2 GB of disk): the whole SF1
// run, plaintext and sealed, with every check, including the SF1 answer
// set (answers.go) for all 22 queries.
func TestSF1(t *testing.T) {
	if os.Getenv("TEEML_LONG_TESTS") == "" {
		t.Skip("set TEEML_LONG_TESTS=1 for the SF1 run")
	}
	ks, id, err := EphemeralKeys()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Bench(t.Context(), BenchOptions{Dir: t.TempDir(), SF: 1, Encrypted: true, Keys: ks, KeyID: id,
		Engine: engine.Options{MemoryLimit: "12GB"}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.Print(&b)
	t.Log("\n" + b.String())
	for i, a := range rep.Sealed.Answers {
		if len(a.Rows) > 0 {
			t.Logf("Q%d first row: %s (%d rows)", i+1, strings.Join(a.Rows[0], "|"), len(a.Rows))
		}
	}
	if rep.Correct != NumQueries {
		t.Errorf("%d/%d correct: %v", rep.Correct, rep.Verified, rep.CheckErrs)
	}
}
