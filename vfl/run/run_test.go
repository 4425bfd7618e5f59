package run

import (
	"context"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/vfl/split"
)

func TestInProcessBreastCancer(t *testing.T) {
	for _, kind := range []split.Kind{split.KindLR, split.KindWideDeep} {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			plan, err := SetupSimulated(SetupOptions{Dir: dir, Dataset: "breast_cancer", Kind: kind})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			l, f, err := RunInProcess(ctx, plan, dir+"/state", testlog.Discard())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v ms/iter %.3f bytes/iter %.0f", kind, *l.Metrics, l.MsPerIter, l.BytesPerIter)
			if l.Applied != l.Iterations || f.Applied != f.Iterations || l.Iterations != f.Iterations {
				t.Fatalf("applied leader %d follower %d of %d/%d", l.Applied, f.Applied, l.Iterations, f.Iterations)
			}
			if l.Metrics.AUC < 0.97 {
				t.Fatalf("AUC %.4f < 0.97", l.Metrics.AUC)
			}
		})
	}
}
