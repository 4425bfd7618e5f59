package vflsource

import (
	"strings"
	"testing"
)

// FuzzParseCard: a model card never panics the page; an error names the
// card on one line; accepted counts are never negative.
func FuzzParseCard(f *testing.F) {
	f.Add([]byte(`{"role":"leader","plan":"p","iterations":26,"applied_updates":26,"resumes":0,"train_rows":409,"test_rows":105,"test_metrics":{"auc":0.98,"n":105},"simulated":true,"created":"2026-12-07T14:40:38Z"}`))
	f.Add([]byte(`{"iterations":-1}`))
	f.Add([]byte(`{"test_metrics":{"auc":"x","loss":1e400}}`))
	f.Add([]byte(`{"created":"yesterday"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseCard(b, "card.json")
		if err != nil {
			if m != nil || !strings.Contains(err.Error(), "card.json") {
				t.Fatalf("card %v with error %v", m, err)
			}
			return
		}
		if m.Iterations < 0 || m.AppliedUpdates < 0 || m.Resumes < 0 || m.TrainRows < 0 || m.TestRows < 0 {
			t.Fatalf("negative counts accepted: %+v", m)
		}
	})
}
