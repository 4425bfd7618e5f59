package metrics

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/internal/testlog"
)

// benchRound feeds o one round of n collaborators: a model download, two
// validation reports and an update each, then the round's close (which
// syncs the Recorder).
func benchRound(o *Observer, r, n int) {
	o.RoundOpened(r)
	for i := range n {
		c := fmt.Sprintf("col-%d", i)
		o.ModelSent(r, c, 1<<20, 0.01)
		for _, task := range []string{protocol.TaskAggregatedModelValidation, protocol.TaskLocallyTunedModelValidation} {
			o.MetricsReported(protocol.MetricsEvent{Round: r, Collaborator: c, Task: task, NumExamples: 100, Loss: 0.3,
				Metrics: map[string]float64{"accuracy": 0.9}, Seconds: 0.1})
		}
		o.UpdateReceived(protocol.UpdateEvent{Round: r, Collaborator: c, NumExamples: 100, Bytes: 1 << 20, Seconds: 0.02,
			DownloadSeconds: 0.02, TrainSeconds: 1, Metrics: map[string]float64{"train_loss": 0.2}})
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("col-%d", i)
	}
	o.RoundClosed(protocol.RoundSummary{Round: r, Participants: names, Accepted: names, EvalLoss: 0.3,
		EvalMetrics: map[string]float64{"accuracy": 0.9}, Seconds: 5, AggregateSeconds: 0.1, BytesIn: int64(n) << 20, BytesOut: int64(n) << 20})
}

// BenchmarkObserverRound is the metrics cost of one round of 10
// collaborators (51 JSONL records, one fsync, Prometheus updates), to be
// compared with a round's seconds of training and transfer.
func BenchmarkObserverRound(b *testing.B) {
	for _, mode := range []string{"jsonl+prometheus", "prometheus-only"} {
		b.Run(mode, func(b *testing.B) {
			var rec Recorder = Nop{}
			if mode == "jsonl+prometheus" {
				j, err := OpenJSONL(filepath.Join(b.TempDir(), FileName), testlog.Discard())
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				rec = j
			}
			o := NewObserver(rec, NewProm(), testlog.Discard())
			b.ResetTimer()
			for i := range b.N {
				benchRound(o, i+1, 10)
			}
		})
	}
}
