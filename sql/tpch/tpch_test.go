package tpch

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/teeml/teeml/sql/engine"
)

// TestSmoke: a consistent 2000-row prefix of SF1 (dbgen has no fractional
// scale), plaintext and sealed: Q1 and Q6 match the Go recomputation, all 22
// sealed answers match the plaintext ones, and no plaintext table exists in
// the sealed directory.
func TestSmoke(t *testing.T) {
	ks, id, err := EphemeralKeys()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rep, err := Bench(t.Context(), BenchOptions{Dir: dir, SF: 1, Limit: 2000, Encrypted: true, Keys: ks, KeyID: id, Rounds: 2,
		Engine: engine.Options{MemoryLimit: "1GB", Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.Print(&b)
	t.Log("\n" + b.String())
	if rep.Correct != NumQueries || len(rep.CheckErrs) > 0 {
		t.Fatalf("%d/%d correct: %v", rep.Correct, rep.Verified, rep.CheckErrs)
	}
	if n := rep.Plain.Rows["lineitem"]; n < 2000 || n > 7*2000 {
		t.Fatalf("lineitem has %d rows for 2000 orders", n)
	}
	if len(rep.Plain.Answers[0].Rows) != 4 {
		t.Fatalf("Q1 has %d groups, want 4", len(rep.Plain.Answers[0].Rows))
	}
	// A known comment word of lineitem rows must not be in the sealed files.
	ents, _ := os.ReadDir(dir + "/sealed")
	if len(ents) != len(Tables) {
		t.Fatalf("sealed dir has %d files", len(ents))
	}
	for _, e := range ents {
		b, _ := os.ReadFile(dir + "/sealed/" + e.Name())
		if bytes.Contains(b, []byte("DELIVER IN PERSON")) || bytes.Contains(b, []byte("Customer#")) || bytes.Contains(b, []byte("Supplier#")) {
			t.Errorf("%s holds plaintext", e.Name())
		}
	}
	plain, _ := os.ReadFile(PlainPath(dir, "lineitem"))
	if !bytes.Contains(plain, []byte("DELIVER IN PERSON")) {
		t.Fatal("the plaintext probe finds nothing in the plaintext file: the probe is broken")
	}
}

// TestChecksCanFail: a changed Q1 or Q6 answer is caught.
func TestChecksCanFail(t *testing.T) {
	e := newExpected()
	e.add(10, 100000, 5, 2, 'A', 'F', "1994-02-01")
	ok1 := [][]string{{"A", "F", "10.00", "1000.00", "950.0000", "969.000000", "10.0", "1000.0", "0.05", "1"}}
	if err := e.checkQ1(ok1); err != nil {
		t.Fatal(err)
	}
	bad := [][]string{{"A", "F", "10.00", "1000.00", "950.0001", "969.000000", "10.0", "1000.0", "0.05", "1"}}
	if err := e.checkQ1(bad); err == nil {
		t.Fatal("Q1 check accepted a wrong sum")
	}
	if err := e.checkQ6([][]string{{"50.0000"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.checkQ6([][]string{{"50.0100"}}); err == nil || !strings.Contains(err.Error(), "Q6") {
		t.Fatal("Q6 check accepted a wrong sum")
	}
}

// TestSF1AnswerCheckCanFail: the answer-set comparison catches a wrong
// count, a wrong number beyond the reference's precision, and wrong text.
func TestSF1AnswerCheckCanFail(t *testing.T) {
	good := Answer{Query: 13, Columns: []string{"c_count", "custdist"}, Rows: make([][]string, 42)}
	good.Rows[0] = []string{"0", "50005"}
	if err := checkSF1(good); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Rows = append([][]string{{"0", "50004"}}, good.Rows[1:]...)
	if checkSF1(bad) == nil {
		t.Error("wrong count accepted")
	}
	if checkSF1(Answer{Query: 13, Columns: good.Columns, Rows: good.Rows[:41]}) == nil {
		t.Error("wrong row count accepted")
	}
	for got, want := range map[string]bool{"123141078.2283": true, "123141078.239": true, "123141078.25": false} {
		if matches(got, "123141078.23") != want {
			t.Errorf("matches(%s, 123141078.23) = %v", got, !want)
		}
	}
	if matches("FRANCE ", "FRANCE") || matches("21", "20") {
		t.Error("text or integer matched loosely")
	}
}
