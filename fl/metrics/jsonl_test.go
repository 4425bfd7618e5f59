package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/teeml/teeml/internal/testlog"
)

func openT(t *testing.T, path string) (*JSONL, *testlog.Buffer) {
	t.Helper()
	var log testlog.Buffer
	j, err := OpenJSONL(path, log.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, &log
}

func rec(round int, phase, who string) Record {
	return Record{Round: round, Phase: phase, Participant: who, Seconds: 0.5, Bytes: 10}
}

func TestJSONLRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs", "x", FileName)
	j, _ := openT(t, path)
	want := []Record{
		rec(1, PhaseDownload, "col-1"),
		{Round: 1, Phase: PhaseRound, Participant: Aggregator, Seconds: 2, Participants: []string{"col-1"},
			Accepted: []string{"col-1"}, Metrics: map[string]float64{"val_loss": 0.3, "nan": nan(), "inf": inf()}},
	}
	for _, r := range want {
		if err := j.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	got, warn, err := ReadFile(path)
	if err != nil || len(warn) != 0 {
		t.Fatalf("read: %v %v", err, warn)
	}
	if len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
	for _, r := range got {
		if r.V != Version || r.Time.IsZero() {
			t.Errorf("record %+v lacks version or time", r)
		}
	}
	// Non-finite metrics are dropped (JSON has no NaN), finite ones kept.
	if m := got[1].Metrics; len(m) != 1 || m["val_loss"] != 0.3 {
		t.Errorf("round metrics %v, want only val_loss=0.3", m)
	}
	if got[1].Participants[0] != "col-1" || got[0].Bytes != 10 {
		t.Errorf("fields lost: %+v", got)
	}
}

// A crash mid-write leaves a torn last line: the reader skips it with a
// warning naming the line, and reopening truncates it before appending.
func TestJSONLTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	j, _ := openT(t, path)
	for r := 1; r <= 3; r++ {
		if err := j.Record(rec(r, PhaseRound, Aggregator)); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"v":1,"round":4,"phase":"ro`)
	f.Close()

	recs, warn, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || len(warn) != 1 || !strings.Contains(warn[0], "line 4") || !strings.Contains(warn[0], "incomplete") {
		t.Fatalf("got %d records, warnings %q; want 3 and one about line 4", len(recs), warn)
	}

	j2, log := openT(t, path)
	if !strings.Contains(log.String(), "torn last line") {
		t.Errorf("no warning about the torn line: %s", log.String())
	}
	if err := j2.Record(rec(4, PhaseRound, Aggregator)); err != nil {
		t.Fatal(err)
	}
	recs, warn, err = ReadFile(path)
	if err != nil || len(warn) != 0 || len(recs) != 4 || recs[3].Round != 4 {
		t.Fatalf("after reopen: %d records, %v, %v", len(recs), warn, err)
	}
}

// A file that is one torn line (no newline at all) is truncated to empty.
func TestJSONLTornOnlyLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte(`{"v":1,"rou`), 0o644); err != nil {
		t.Fatal(err)
	}
	j, _ := openT(t, path)
	if err := j.Record(rec(1, PhaseRound, Aggregator)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if bytes.Count(b, []byte("\n")) != 1 || !bytes.HasPrefix(b, []byte(`{"v":1,"time"`)) {
		t.Fatalf("file %q", b)
	}
}

// Resume(N) drops every record of a round > N, keeps round 0 (attestation
// before the first round) and appends a resume record, so no round's
// records appear twice once the rounds are re-run.
func TestJSONLResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	j, _ := openT(t, path)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(j.Record(Record{Round: 0, Phase: PhaseAttestation, Participant: "col-1", Result: AttestAccepted}))
	for r := 1; r <= 3; r++ {
		must(j.Record(rec(r, PhaseTrain, "col-1")))
		if r <= 2 {
			must(j.Record(rec(r, PhaseRound, Aggregator)))
		}
	}
	// The crash happened during round 3; the checkpoint is of round 2.
	// Simulate a checkpoint of round 1 only: rounds 2 and 3 are redone.
	dropped, err := j.Resume(1)
	must(err)
	if dropped != 3 {
		t.Errorf("dropped %d records, want 3 (train 2, round 2, train 3)", dropped)
	}
	for r := 2; r <= 3; r++ {
		must(j.Record(rec(r, PhaseTrain, "col-1")))
		must(j.Record(rec(r, PhaseRound, Aggregator)))
	}
	recs, _, err := ReadFile(path)
	must(err)
	count := map[string]int{}
	for _, r := range recs {
		count[fmt.Sprintf("%s/%d", r.Phase, r.Round)]++
	}
	want := map[string]int{"attestation/0": 1, "train/1": 1, "round/1": 1, "resume/1": 1, "train/2": 1, "round/2": 1, "train/3": 1, "round/3": 1}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("records per phase/round %v, want %v", count, want)
	}
	// Nothing to drop: the file is left as is, a resume record is added.
	dropped, err = j.Resume(3)
	must(err)
	if dropped != 0 {
		t.Errorf("dropped %d, want 0", dropped)
	}
}

func TestJSONLConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	j, _ := openT(t, path)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				r := rec(i, PhaseUpload, fmt.Sprintf("col-%d", g))
				r.Metrics = map[string]float64{"x": float64(i)}
				if err := j.Record(r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	recs, warn, err := ReadFile(path)
	if err != nil || len(warn) != 0 || len(recs) != 400 {
		t.Fatalf("%d records, %v, %v; want 400 whole lines", len(recs), warn, err)
	}
}

func TestReadErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"v":1,"round":1,"phase":"round","participant":"aggregator","seconds":1,"bytes":0}` + "\n"
	cases := []struct {
		name, content string
		want          []string
	}{
		{"empty.jsonl", "", []string{"empty.jsonl", "no records"}},
		{"blank.jsonl", "\n\n", []string{"blank.jsonl", "no records"}},
		{"corrupt.jsonl", good + "{not json}\n" + good, []string{"corrupt.jsonl", "line 2", "not a JSON record"}},
		{"future.jsonl", good + good + `{"v":2,"round":1,"phase":"round"}` + "\n", []string{"future.jsonl", "line 3", "schema version 2"}},
		{"nov.jsonl", `{"round":1,"phase":"round"}` + "\n", []string{"line 1", "no schema version"}},
		{"nophase.jsonl", `{"v":1,"round":1}` + "\n", []string{"line 1", "no phase"}},
		{"negative.jsonl", `{"v":1,"round":-1,"phase":"round"}` + "\n", []string{"line 1", "round -1"}},
		{"two.jsonl", `{"v":1,"round":1,"phase":"round"} {"v":1}` + "\n", []string{"line 1", "more than one"}},
		{"long.jsonl", strings.Repeat("x", MaxLineBytes+10) + "\n", []string{"line 1", "longer than"}},
		{"onlytorn.jsonl", `{"v":1,"round":1,"phase":"ro`, []string{"no records"}},
	}
	for _, c := range cases {
		_, _, err := ReadFile(write(c.name, c.content))
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", c.name, err)
		}
	}
	_, _, err := ReadFile(filepath.Join(dir, "missing", FileName))
	if err == nil || !strings.Contains(err.Error(), filepath.Join("missing", FileName)) {
		t.Errorf("missing file: %v", err)
	}
}

// TestReadFileMissing: a missing metrics file says so in its own words and
// is fs.ErrNotExist for the caller.
func TestReadFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	_, _, err := ReadFile(path)
	if want := "metrics: " + path + ": no such file (is this a run directory of an aggregator?)"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if !errors.Is(fmt.Errorf("report: %w", err), fs.ErrNotExist) {
		t.Fatalf("%v is not fs.ErrNotExist", err)
	}
}
