package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/metrics"
)

// FuzzSummarize: whatever the metrics reader accepts, the summary and its
// table are computed without panicking, with one table row per round.
func FuzzSummarize(f *testing.F) {
	f.Add([]byte(`{"v":1,"round":1,"participant":"aggregator","phase":"round","seconds":1,"participants":["a"],"accepted":["a"],"metrics":{"val_loss":0.5,"val_accuracy":0.9}}
{"v":1,"round":1,"participant":"aggregator","phase":"evaluate","metrics":{"test_r2":0.5,"test_loss":1}}
{"v":1,"round":1,"participant":"a|b","phase":"train","seconds":2,"source":"collaborator"}
{"v":1,"round":0,"participant":"x","phase":"attestation","result":"refused"}
`))
	f.Add([]byte(`{"v":1,"round":3,"participant":"aggregator","phase":"round"}` + "\n" + `{"v":1,"round":3,"participant":"aggregator","phase":"round"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, _, err := metrics.Parse(bytes.NewReader(b), "fuzz.jsonl")
		if err != nil {
			return
		}
		s := Summarize(recs)
		rounds := map[int]bool{}
		for _, r := range recs {
			if r.Phase == metrics.PhaseRound {
				rounds[r.Round] = true
			}
		}
		for _, r := range s.Rounds {
			if r.Round < 0 {
				t.Fatalf("round %d", r.Round)
			}
		}
		var md strings.Builder
		if err := s.Markdown(&md); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(md.String(), "\n| "); got < len(rounds) {
			t.Fatalf("%d table rows for %d rounds", got, len(rounds))
		}
	})
}
