package metrics

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: the metrics reader never panics, returns records only with a
// nil error, and every error names the input and a line.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"v":1,"time":"2026-01-01T00:00:00Z","round":1,"participant":"col-1","phase":"train","seconds":1.5,"bytes":0,"metrics":{"train_loss":0.3}}` + "\n"))
	f.Add([]byte(`{"v":1,"round":2,"phase":"round","participant":"aggregator","participants":["a","b"],"accepted":["a"],"rejected":["b"],"bytes_in":9,"bytes_out":8}` + "\n" + `{"v":1,"round":3,"pha`))
	f.Add([]byte("\n\n\r\n"))
	f.Add([]byte(`{"v":2,"round":1,"phase":"x"}` + "\n"))
	f.Add([]byte(`{"v":1,"round":1,"phase":"x","metrics":{"a":1e400}}` + "\n"))
	f.Add([]byte(`[1,2,3]` + "\n" + `null` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, _, err := Parse(bytes.NewReader(b), "fuzz.jsonl")
		if err != nil {
			if len(recs) != 0 {
				t.Fatalf("records with an error: %v", err)
			}
			if !strings.Contains(err.Error(), "fuzz.jsonl") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not name the input on one line", err)
			}
			return
		}
		if len(recs) == 0 {
			t.Fatal("no records and no error")
		}
		for _, r := range recs {
			if r.V < 1 || r.V > Version || r.Phase == "" || r.Round < 0 || r.Seconds < 0 {
				t.Fatalf("invalid record accepted: %+v", r)
			}
		}
	})
}
