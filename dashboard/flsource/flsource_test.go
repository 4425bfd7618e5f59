package flsource_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/dashboard/flsource"
	"github.com/teeml/teeml/fl/metrics"
	flrun "github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/pki"
)

func TestLayoutIsParty(t *testing.T) {
	if flsource.RootFile != party.RootFile || flsource.BundleFile != party.BundleFile {
		t.Errorf("flsource reads %s and %s, party writes %s and %s", flsource.RootFile, flsource.BundleFile, party.RootFile, party.BundleFile)
	}
	ok, err := filepath.Match(filepath.Join("ws", flsource.RunsGlob), filepath.Join(flrun.RunDir("ws", "0123456789abcdef0123"), metrics.FileName))
	if err != nil || !ok {
		t.Errorf("runs glob %s does not match fl/run.RunDir's metrics file (%v)", flsource.RunsGlob, err)
	}
}

func leaf(t *testing.T, ws, name string) []*x509.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(ws, "pki", name+".crt"), filepath.Join(ws, "pki", name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{c.Leaf}
}

// TestVerifyClientAndRevocation: a member's identity certificate is
// accepted as a browser's client certificate; another federation's is
// not; after the CA revokes the member and publishes a new bundle it is
// refused as revoked, and the federation page's source lists the
// revocation.
func TestVerifyClientAndRevocation(t *testing.T) {
	ctx := context.Background()
	ws := filepath.Join(t.TempDir(), "ws")
	if _, err := flrun.SetupSimulated(ctx, ws, "digits_mlp", 1, 1, 2, 1); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := flrun.SetupSimulated(ctx, other, "digits_mlp", 1, 1, 1, 1); err != nil {
		t.Fatal(err)
	}
	src := flsource.New(ws)
	now := time.Now()
	if name, err := src.VerifyClient(leaf(t, ws, "col-1"), now); err != nil || name != "col-1" {
		t.Fatalf("col-1: %q %v, want accepted as col-1", name, err)
	}
	if _, err := src.VerifyClient(leaf(t, other, "col-1"), now); err == nil || !strings.Contains(err.Error(), "is not a certificate of federation") {
		t.Errorf("another federation's col-1: %v, want refused", err)
	}
	if _, err := src.VerifyClient(leaf(t, ws, "col-1"), now.Add(400*24*time.Hour)); err == nil {
		t.Error("col-1 accepted 400 days later")
	}
	ca, err := pki.OpenCA(filepath.Join(ws, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Revoke("col-2", "key compromise", now); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteBundle(filepath.Join(ws, flsource.BundleFile), now); err != nil {
		t.Fatal(err)
	}
	if _, err := src.VerifyClient(leaf(t, ws, "col-2"), now.Add(time.Second)); err == nil || !strings.Contains(err.Error(), "is revoked") {
		t.Errorf("revoked col-2: %v, want refused as revoked", err)
	}
	if name, err := src.VerifyClient(leaf(t, ws, "col-1"), now.Add(time.Second)); err != nil || name != "col-1" {
		t.Errorf("col-1 after col-2's revocation: %q %v", name, err)
	}
	f, err := src.Federation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var revoked []string
	for _, m := range f.Members {
		if m.Status == "revoked" {
			revoked = append(revoked, m.Name+": "+m.RevocationReason)
			if m.RevokedAt.IsZero() {
				t.Errorf("%s revoked without a time", m.Name)
			}
		}
		if !m.Simulated || m.Platform == "" || m.NotAfter.IsZero() {
			t.Errorf("member %+v lacks its evidence or expiry", m)
		}
	}
	if !reflect.DeepEqual(revoked, []string{"col-2: key compromise"}) {
		t.Errorf("revocations %q", revoked)
	}
}

// TestRun: rounds with the evaluation merged, stragglers (fetched the
// model, not a participant), rejections, refusals, resumes and per-phase
// times.
func TestRun(t *testing.T) {
	recs := []metrics.Record{
		{Round: 1, Participant: "a", Phase: metrics.PhaseDownload, Seconds: 0.5},
		{Round: 1, Participant: "b", Phase: metrics.PhaseDownload, Seconds: 0.25},
		{Round: 1, Participant: "c", Phase: metrics.PhaseDownload, Seconds: 0.25},
		{Round: 1, Participant: "a", Phase: metrics.PhaseTrain, Seconds: 2},
		{Round: 1, Participant: "b", Phase: metrics.PhaseRefused, Reason: "stale", Message: "update for round 0"},
		{Round: 1, Participant: "b", Phase: metrics.PhaseRejected, Reason: "strategy_norm", Message: `client "b": norm check: 1e9`},
		{Round: 1, Participant: metrics.Aggregator, Phase: metrics.PhaseEvaluate, Seconds: 0.1, Metrics: map[string]float64{"test_accuracy": 0.75}},
		{Round: 1, Participant: metrics.Aggregator, Phase: metrics.PhaseRound, Seconds: 3, Participants: []string{"a", "b"},
			Accepted: []string{"a"}, Rejected: []string{"b"}, Metrics: map[string]float64{"val_accuracy": 0.5}},
		{Round: 1, Phase: metrics.PhaseResume},
		{Round: 2, Participant: "a", Phase: metrics.PhaseDownload, Seconds: 1.5},
		{Round: 2, Participant: "a", Phase: metrics.PhaseTrain, Seconds: 4},
		{Round: 2, Participant: metrics.Aggregator, Phase: metrics.PhaseRound, Seconds: 5, Participants: []string{"a"}, Accepted: []string{"a"}},
		{Round: 3, Phase: metrics.PhaseStopped, Reason: "privacy_budget", Message: "epsilon 8 spent"},
	}
	run := flsource.Run("r", recs, []string{"w"})
	if len(run.Rounds) != 2 {
		t.Fatalf("%d rounds", len(run.Rounds))
	}
	r1 := run.Rounds[0]
	if !reflect.DeepEqual(r1.Metrics, map[string]float64{"val_accuracy": 0.5, "test_accuracy": 0.75}) ||
		!reflect.DeepEqual(r1.Stragglers, []string{"c"}) || r1.Seconds != 3 {
		t.Errorf("round 1: %+v", r1)
	}
	if len(run.Rounds[1].Stragglers) != 0 {
		t.Errorf("round 2 stragglers %v", run.Rounds[1].Stragglers)
	}
	if len(run.Rejections) != 2 || run.Rejections[0].Kind != "refused" || run.Rejections[1].Reason != "strategy_norm" {
		t.Errorf("rejections %+v", run.Rejections)
	}
	if len(run.Events) != 2 || run.Events[0].Kind != "resume" || run.Events[1].Reason != "privacy_budget: epsilon 8 spent" {
		t.Errorf("events %+v", run.Events)
	}
	want := []dashboard.PhaseTime{
		{Participant: "a", Phase: "download", Count: 2, Seconds: 2, Max: 1.5},
		{Participant: "a", Phase: "train", Count: 2, Seconds: 6, Max: 4},
		{Participant: "aggregator", Phase: "evaluate", Count: 1, Seconds: 0.1, Max: 0.1},
		{Participant: "b", Phase: "download", Count: 1, Seconds: 0.25, Max: 0.25},
		{Participant: "c", Phase: "download", Count: 1, Seconds: 0.25, Max: 0.25},
	}
	if !reflect.DeepEqual(run.Phases, want) {
		t.Errorf("phases\n got %+v\nwant %+v", run.Phases, want)
	}
	if run.Phases[1].Mean() != 3 {
		t.Errorf("mean %v", run.Phases[1].Mean())
	}
}
