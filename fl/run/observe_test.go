package run

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/testenv"
)

// rogueHandshake connects to addr with a self-signed certificate that
// carries no attestation evidence: the aggregator must refuse it.
func rogueHandshake(t *testing.T, addr string) error {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rogue"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"},
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		return err
	}
	defer conn.Close()
	// TLS 1.3: the server's verdict on our certificate arrives with the
	// first read.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

func get(t *testing.T, url string) (string, error) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitFor polls buf until re matches, for at most 30 s.
func waitMatch(t *testing.T, buf *lockedBuf, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	waitFor(t, 30*time.Second, "output matching "+re.String(), func() bool {
		m = re.FindStringSubmatch(buf.String())
		return m != nil
	})
	return m
}

// TestAggregatorMetrics runs a simulated federation in this process with
// --metrics-addr: /metrics answers while the aggregator runs (and counts a
// refused RA-TLS handshake), stops with the run, and metrics.jsonl holds
// every phase of every participant and round, with the same held-out test
// accuracy the aggregator printed.
//
// GoMLX's kernels trip -race's checkptr (see .ci/run): under -race, run
// with -gcflags=all=-d=checkptr=0.
func TestAggregatorMetrics(t *testing.T) {
	ws := setup(t, 2, 2)
	hash, err := plan.ReadHashFile(filepath.Join(ws, filepath.FromSlash(workspace.HashFile)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var aggOut lockedBuf
	waitAgg := startAggregator(ctx, AggregatorOptions{Workspace: ws, Out: &aggOut, Logger: quietLog(), MetricsAddr: "127.0.0.1:0"})
	url := waitMatch(t, &aggOut, regexp.MustCompile(`Prometheus metrics: (http://\S+/metrics)`))[1]
	aggAddr := waitMatch(t, &aggOut, regexp.MustCompile(`on (127\.0\.0\.1:\d+) \(RA-TLS\)`))[1]
	body, err := get(t, url)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"teeml_fl_current_round 1", "teeml_fl_rounds_completed_total 0"} {
		if !strings.Contains(body, w) {
			t.Errorf("scrape before the first round lacks %q", w)
		}
	}
	if err := rogueHandshake(t, aggAddr); err == nil {
		t.Fatal("a certificate without evidence was accepted")
	}
	// The client sees the refusal (the server's alert) before the server
	// has necessarily counted it: poll the scrape until it shows.
	w := `teeml_fl_attestation_results_total{result="refused",role="collaborator"} 1`
	if !testenv.WaitFor(10*time.Second, func() bool {
		body, err = get(t, url)
		return err == nil && strings.Contains(body, w)
	}) {
		t.Errorf("scrape after a refused handshake lacks %q (last error %v)", w, err)
	}

	names := []string{"col-1", "col-2"}
	runCollaborators(t, ctx, ws, names, nil)
	if err := waitAgg(); err != nil {
		t.Fatalf("aggregator: %v\n%s", err, aggOut.String())
	}
	if _, err := get(t, url); err == nil {
		t.Error("/metrics still served after the run ended")
	}

	path := MetricsFile(ws, hash)
	if !strings.Contains(aggOut.String(), "metrics file: "+path) {
		t.Errorf("aggregator output does not name the metrics file %s", path)
	}
	recs, warn, err := metrics.ReadFile(path)
	if err != nil || len(warn) != 0 {
		t.Fatalf("metrics file: %v %v", err, warn)
	}
	count := map[string]int{}
	for _, r := range recs {
		key := fmt.Sprintf("%d/%s/%s", r.Round, r.Participant, r.Phase)
		switch r.Phase {
		case metrics.PhaseDownload, metrics.PhaseTrain:
			if r.Source != "collaborator" || r.Seconds <= 0 {
				t.Errorf("%s: source %q seconds %v, want the collaborator's measurement", key, r.Source, r.Seconds)
			}
		case metrics.PhaseValidate:
			key += "/" + r.Task
		case metrics.PhaseAttestation:
			key = r.Phase + "/" + r.Result
			if r.Result == metrics.AttestAccepted {
				key += "/" + r.Participant
			}
		case metrics.PhaseEvaluate:
			// The aggregator printed the same evaluation.
			line := fmt.Sprintf("round %d/2: participants 2, accepted 2, rejected 0, global test_accuracy=%.4f test_loss=%.4f",
				r.Round, r.Metrics["test_accuracy"], r.Metrics["test_loss"])
			if !strings.Contains(aggOut.String(), line) {
				t.Errorf("evaluate record %v does not match the aggregator's output (want %q)", r.Metrics, line)
			}
		case metrics.PhaseRound:
			if len(r.Participants) != 2 || r.BytesIn <= 0 || r.BytesOut <= 0 || r.Seconds <= 0 {
				t.Errorf("round record %+v", r)
			}
		}
		count[key]++
	}
	want := map[string]int{"attestation/refused": 1}
	for r := 1; r <= 2; r++ {
		for _, n := range names {
			for _, ph := range []string{"download", "train", "upload", "validate/aggregated_model_validation", "validate/locally_tuned_model_validation"} {
				want[fmt.Sprintf("%d/%s/%s", r, n, ph)] = 1
			}
		}
		for _, ph := range []string{"aggregate", "evaluate", "round"} {
			want[fmt.Sprintf("%d/aggregator/%s", r, ph)] = 1
		}
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d records %s, want %d", count[k], k, n)
		}
	}
	for _, n := range names {
		if count["attestation/accepted/"+n] < 1 {
			t.Errorf("no accepted attestation record for %s", n)
		}
	}
	t.Logf("records per round/participant/phase: %v", count)
}

// TestRestartDropsAbandonedRounds: an aggregator that starts again at
// round 1 drops the records of the earlier run's rounds (kept: round-0
// attestations), so the report never shows a round twice; a first start
// leaves the file empty.
func TestRestartDropsAbandonedRounds(t *testing.T) {
	ws, hash := t.TempDir(), strings.Repeat("ab", 32)
	ctx := context.Background()
	var out lockedBuf
	ob, err := openObservability(ctx, nil, ws, hash, "", "", &out, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ob.resume(nil, &out, quietLog())
	ob.obs.Attestation("col-1", "127.0.0.1:9", "collaborator", metrics.AttestAccepted, "")
	for r := 1; r <= 2; r++ {
		ob.obs.RoundOpened(r)
		ob.obs.Evaluated(r, 0.1, map[string]float64{"test_accuracy": 0.5})
	}
	ob.close()
	if recs, _, err := metrics.ReadFile(MetricsFile(ws, hash)); err != nil || len(recs) != 3 {
		t.Fatalf("first run: %d records, %v; want 3 (no resume record)", len(recs), err)
	}

	ob, err = openObservability(ctx, nil, ws, hash, "", "", &out, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ob.resume(nil, &out, quietLog())
	ob.close()
	recs, _, err := metrics.ReadFile(MetricsFile(ws, hash))
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, r := range recs {
		phases = append(phases, fmt.Sprintf("%s/%d", r.Phase, r.Round))
	}
	if got := strings.Join(phases, " "); got != "attestation/0 resume/0" {
		t.Errorf("after restart: %s, want attestation/0 resume/0", got)
	}
	if !strings.Contains(out.String(), "dropped 2 records of rounds after round 0") {
		t.Errorf("output does not report the dropped records:\n%s", out.String())
	}
}

// TestRefusedCollaboratorIsRecorded: a certified collaborator whose
// evidence the aggregator's policy refuses (the RA-TLS verdict exchange
// path) is recorded by name as a refused attestation.
func TestRefusedCollaboratorIsRecorded(t *testing.T) {
	ws := setup(t, 1, 1)
	pol := filepath.Join(ws, "policies", "collaborator.yaml")
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, bytes.Replace(b, []byte("allow_simulation: true"), []byte("allow_simulation: false"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	hash, err := plan.ReadHashFile(filepath.Join(ws, filepath.FromSlash(workspace.HashFile)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	aggCtx, stopAgg := context.WithCancel(ctx)
	aggErr := make(chan error, 1)
	go func() { aggErr <- RunAggregator(aggCtx, AggregatorOptions{Workspace: ws, Logger: quietLog()}) }()
	if err := RunCollaborator(ctx, CollaboratorOptions{Workspace: ws, Name: "col-1", ConnectTimeout: 20 * time.Second, Logger: quietLog()}); err == nil {
		t.Fatal("collaborator was not refused")
	}
	stopAgg()
	<-aggErr
	recs, _, err := metrics.ReadFile(MetricsFile(ws, hash))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Phase == metrics.PhaseAttestation {
			if r.Participant == "col-1" && r.Result == metrics.AttestRefused && strings.Contains(r.Reason, "simulat") {
				found = true
			} else {
				t.Errorf("unexpected attestation record %+v", r)
			}
		}
	}
	if !found {
		t.Fatalf("no refused attestation record for col-1 in %+v", recs)
	}
}

// TestResumeKeepsCheckpointedRounds: after a crash, the metrics file keeps
// exactly the checkpointed rounds: a record of round 3 (redone after the
// restart) is dropped, and round 2, checkpointed but whose record was lost
// before it was written, is restored from the checkpoint's history.
func TestResumeKeepsCheckpointedRounds(t *testing.T) {
	ws, hash := t.TempDir(), strings.Repeat("cd", 32)
	ctx := context.Background()
	var out lockedBuf
	ob, err := openObservability(ctx, nil, ws, hash, "", "", &out, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ob.resume(nil, &out, quietLog())
	s1 := protocol.RoundSummary{Round: 1, Participants: []string{"col-1"}, Accepted: []string{"col-1"}, Seconds: 1}
	s2 := protocol.RoundSummary{Round: 2, Participants: []string{"col-1"}, Accepted: []string{"col-1"}, Seconds: 2}
	ob.obs.RoundOpened(1)
	ob.obs.RoundClosed(s1)
	ob.obs.RoundOpened(2) // round 2 is checkpointed, then the process dies before RoundClosed
	ob.obs.RoundOpened(3)
	ob.obs.Evaluated(3, 0.1, map[string]float64{"test_accuracy": 0.5}) // never checkpointed
	ob.close()

	ob, err = openObservability(ctx, nil, ws, hash, "", "", &out, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ob.resume([]protocol.RoundSummary{s1, s2}, &out, quietLog())
	ob.close()
	recs, _, err := metrics.ReadFile(MetricsFile(ws, hash))
	if err != nil {
		t.Fatal(err)
	}
	rounds := map[int]int{}
	for _, r := range recs {
		if r.Round > 2 {
			t.Errorf("record of uncheckpointed round kept: %+v", r)
		}
		if r.Phase == metrics.PhaseRound {
			rounds[r.Round]++
		}
	}
	if rounds[1] != 1 || rounds[2] != 1 {
		t.Fatalf("round records per round = %v, want one each for rounds 1 and 2", rounds)
	}
}
