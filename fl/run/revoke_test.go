package run

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/pki"
)

// setReload appends federation_reload: d to the party configuration of
// every name in ws.
func setReload(t *testing.T, ws string, d time.Duration, names ...string) {
	t.Helper()
	for _, n := range names {
		path := party.ConfigFile(ws, n)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, []byte("federation_reload: "+d.String()+"\n")...)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if c, err := party.LoadConfig(path); err != nil || c.FederationReload != d {
			t.Fatalf("%s: federation_reload %v, %v", path, c, err)
		}
	}
}

// TestRevokedCollaboratorRefusedWhileRunning (issue 23, defect 8): four
// processes — the aggregator and col-1..3 — run a federation; while col-3
// trains in round 2 the CA revokes it and writes a new federation bundle.
// Without any restart, the aggregator reloads the bundle within one reload
// interval, refuses col-3's next call on its already open connection
// (certificate revoked), and completes the run with col-1 and col-2; col-3
// ends with the refusal. A bundle that does not verify is refused with a
// one-line error and the running federation keeps the one in force.
func TestRevokedCollaboratorRefusedWhileRunning(t *testing.T) {
	ws := setup(t, 4, 3)
	const reload = 300 * time.Millisecond
	editPlan(t, ws, func(p *plan.Plan) {
		// Long enough rounds (≈ 1–3 s) that the revocation lands while col-3
		// trains round 2: with pushed task readiness a 2-epoch round of
		// digits takes ≈ 0.15 s and the run could end before the reload.
		p.Collaborator.EpochsPerRound = 30
		p.StragglerHandling = plan.StragglerPolicy{Policy: plan.StragglerCutoffTime, CutoffTime: 3 * time.Second, MinimumReporting: 2}
	})
	setReload(t, ws, reload, "aggregator", "col-1", "col-2", "col-3")
	bundle := filepath.Join(ws, filepath.FromSlash(party.BundleFile))
	good, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}

	agg := startParty(t, ws, "aggregator")
	cols := []*proc{startParty(t, ws, "col-1"), startParty(t, ws, "col-2"), startParty(t, ws, "col-3")}
	waitFor(t, 2*time.Minute, "round 1 to close", func() bool {
		return strings.Contains(agg.stderr.String(), `msg="round closed" component=aggregator round=1`)
	})
	// A tampered bundle (the last byte of its signature flipped) is
	// refused; the federation goes on with the bundle in force.
	var bad []byte
	for rest := good; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "TEEML FEDERATION BUNDLE SIGNATURE" {
			b.Bytes[len(b.Bytes)-1] ^= 1
		}
		bad = append(bad, pem.EncodeToMemory(b)...)
	}
	if err := atomicfile.WriteBytes(bundle, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the tampered bundle to be refused", func() bool {
		return strings.Contains(agg.stderr.String(), "federation bundle reload refused")
	})
	for _, l := range strings.Split(agg.stderr.String(), "\n") {
		if strings.Contains(l, "federation bundle reload refused") {
			t.Logf("aggregator: %s", l)
			if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "bad signature by the signing CA") {
				t.Errorf("refused reload is not a one-line ERROR naming the reason: %s", l)
			}
		}
	}
	if err := atomicfile.WriteBytes(bundle, good, 0o644); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 2*time.Minute, "col-3 to start round 2", func() bool {
		return strings.Contains(agg.stderr.String(), `msg="model sent" component=aggregator collaborator=col-3 round=2`)
	})
	ca, err := pki.OpenCA(filepath.Join(ws, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	if _, err := ca.Revoke("col-3", "test: revoked while the run is going", revoked); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteBundle(bundle, revoked); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the aggregator to reload the bundle", func() bool {
		_, ok := logLineTime(agg.stderr.String(), "federation bundle reloaded")
		return ok
	})
	reloaded, _ := logLineTime(agg.stderr.String(), "federation bundle reloaded")
	t.Logf("bundle with col-3 revoked written; the aggregator reloaded it %.0f ms later (interval %s)",
		float64(reloaded.Sub(revoked).Microseconds())/1000, reload)
	// One interval, plus the tick's scheduling and the log line's clock.
	if d := reloaded.Sub(revoked); d > reload+time.Second {
		t.Errorf("bundle reloaded %s after the revocation, interval %s", d, reload)
	}

	agg.wait(t, 3*time.Minute)
	cols[0].wait(t, 30*time.Second)
	cols[1].wait(t, 30*time.Second)
	select {
	case <-cols[2].done:
	case <-time.After(30 * time.Second):
		t.Fatalf("col-3 still running after the aggregator finished:\n%s", tail(cols[2].stderr.String(), 20))
	}
	if cols[2].err == nil {
		t.Errorf("revoked col-3 exited 0:\n%s", tail(cols[2].stderr.String(), 20))
	}
	log, out := agg.stderr.String(), agg.stdout.String()
	refusal, ok := logLineTime(log, `ratls: refused call: peer \"col-3\": certificate revoked (identity)`)
	if !ok {
		t.Fatalf("the aggregator never refused col-3's calls:\n%s", tail(log, 40))
	}
	t.Logf("col-3 refused %.0f ms after the revocation", float64(refusal.Sub(revoked).Microseconds())/1000)
	col3 := cols[2].stderr.String()
	if !strings.Contains(col3, `aggregator refused collaborator \"col-3\" PermissionDenied`) || !strings.Contains(col3, "certificate revoked (identity)") {
		t.Errorf("col-3 does not report the revocation:\n%s", tail(col3, 20))
	}
	// No update of col-3 is accepted after the reload.
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="update received"`) || !strings.Contains(l, "collaborator=col-3") {
			continue
		}
		if ts, ok := logLineTime(l, "update received"); ok && ts.After(reloaded) {
			t.Errorf("update of revoked col-3 accepted after the reload: %s", l)
		}
	}
	if got := roundLines(out); !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Errorf("round lines %v, want [1 2 3 4]:\n%s", got, out)
	}
	if !strings.Contains(out, FinalAccuracyPrefix) {
		t.Errorf("no final model line:\n%s", out)
	}
}
