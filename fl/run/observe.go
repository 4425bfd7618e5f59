package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/dashboard/flsource"
	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/party"
)

// observability is the aggregator's metrics file (RunDir/metrics.jsonl)
// and, if an address was given, its Prometheus /metrics endpoint.
type observability struct {
	obs   *metrics.Observer
	jsonl *metrics.JSONL
	srv   *metrics.Server
	ui    *dashboard.Server
	// stopCert stops the renewal of the dashboard's RA-TLS certificate.
	stopCert func()
}

// notifyingRecorder tells the dashboard when what it shows changed: a
// round closed (its records are synced at the boundary), the evaluation of
// a round's model (written after the round), a verdict, a rejection, a
// resume or a stop. The records are written to the file before.
type notifyingRecorder struct {
	metrics.Recorder
	notify func()
}

func (r notifyingRecorder) Record(rec metrics.Record) error {
	err := r.Recorder.Record(rec)
	switch rec.Phase {
	case metrics.PhaseEvaluate, metrics.PhaseAttestation, metrics.PhaseRejected, metrics.PhaseRefused, metrics.PhaseResume, metrics.PhaseStopped:
		r.notify()
	}
	return err
}

func (r notifyingRecorder) Sync() error {
	err := r.Recorder.Sync()
	r.notify()
	return err
}

// MetricsFile is the path of the metrics file of the run of plan hash in
// workspace ws.
func MetricsFile(ws, planHash string) string {
	return filepath.Join(RunDir(ws, planHash), metrics.FileName)
}

// openObservability opens the run's metrics file (appending: a restarted
// run continues it; see metrics.JSONL for the resume rule) and serves
// /metrics on addr unless it is empty. The server stops when ctx ends or
// at close.
//
// With uiAddr, the aggregator also serves the web dashboard (package
// dashboard, read-only, HTTPS) of its federation and this run: every round
// boundary pushes the new round to open pages. The pages are served under
// the aggregator party's RA-TLS certificate (id), which a client checks
// with teeml attest verify-server.
func openObservability(ctx context.Context, id *party.Party, ws, hash, addr, uiAddr string, out io.Writer, log *slog.Logger) (*observability, error) {
	path := MetricsFile(ws, hash)
	j, err := metrics.OpenJSONL(path, log)
	if err != nil {
		return nil, err
	}
	var rec metrics.Recorder = j
	var d *dashboard.Dashboard
	if uiAddr != "" {
		src := &flsource.Source{Workspace: ws, Metrics: []string{path}}
		if d, err = dashboard.New(dashboard.Options{Title: "aggregator · " + ws, Federation: src, Attestation: src, FL: src,
			ClientVerifier: src.VerifyClient, Logger: log}); err != nil {
			j.Close()
			return nil, err
		}
		rec = notifyingRecorder{Recorder: j, notify: d.Notify}
	}
	prom := metrics.NewProm()
	if d != nil {
		if err := d.Register(prom.Registry()); err != nil {
			j.Close()
			return nil, err
		}
	}
	o := &observability{obs: metrics.NewObserver(rec, prom, log), jsonl: j}
	if addr != "" {
		if o.srv, err = metrics.Serve(ctx, addr, prom, log); err != nil {
			j.Close()
			return nil, err
		}
		fmt.Fprintf(out, "Prometheus metrics: http://%s/metrics\n", o.srv.Addr())
	}
	if d != nil {
		getCert, stopCert, err := id.ServerCertificate(ctx, log)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("dashboard: %w", err)
		}
		o.stopCert = stopCert
		if o.ui, err = dashboard.Serve(ctx, d, dashboard.ServeOptions{Addr: uiAddr, GetCertificate: getCert}); err != nil {
			o.close()
			return nil, err
		}
		fmt.Fprintln(out, o.ui.Describe(id.Role))
		fmt.Fprintf(out, "dashboard: one-time login: %s\n", d.LoginURL(o.ui.URL()))
	}
	log.Info("metrics file", "path", path, "report", "teeml fl report "+RunDir(ws, hash))
	fmt.Fprintf(out, "metrics file: %s (plot and table: teeml fl report %s)\n", path, RunDir(ws, hash))
	return o, nil
}

// resume applies the metrics file's resume rule (metrics.JSONL.Resume)
// before the first round is opened: lastCompleted is the last round whose
// aggregate was restored from a checkpoint, 0 for a run that starts at
// round 1 (records of an earlier, abandoned run's rounds are then dropped,
// so no round appears twice). A metrics file that cannot be rewritten is
// reported and does not stop the federation.
func (o *observability) resume(history []protocol.RoundSummary, out io.Writer, log *slog.Logger) {
	lastCompleted := 0
	if len(history) > 0 {
		lastCompleted = history[len(history)-1].Round
	}
	dropped, err := o.jsonl.Resume(lastCompleted)
	switch {
	case err != nil:
		log.Warn("metrics file: resume rule not applied; the report may show rounds twice", "err", err)
		fmt.Fprintf(out, "warning: metrics file: %v\n", err)
		return
	case dropped > 0:
		fmt.Fprintf(out, "metrics file: dropped %d records of rounds after round %d (written before the restart)\n", dropped, lastCompleted)
	}
	if len(history) == 0 {
		return
	}
	recs, _, err := metrics.ReadFile(o.jsonl.Path())
	if err != nil {
		log.Warn("metrics file: cannot check for rounds missing after the restart", "err", err)
		return
	}
	have := map[int]bool{}
	for _, r := range recs {
		if r.Phase == metrics.PhaseRound {
			have[r.Round] = true
		}
	}
	for _, s := range history {
		if !have[s.Round] {
			o.obs.RoundClosed(s)
			log.Info("metrics file: restored the record of a checkpointed round", "round", s.Round)
		}
	}
}

func (o *observability) close() {
	if o.ui != nil {
		o.ui.Close()
	}
	if o.stopCert != nil {
		o.stopCert()
	}
	if o.srv != nil {
		o.srv.Close()
	}
	o.jsonl.Close()
}

// testMetrics names the held-out test metrics test_<metric>.
func testMetrics(m ml.Metrics) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m.Map() {
		out["test_"+k] = v
	}
	return out
}
