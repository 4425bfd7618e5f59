package pki

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/atomicfile"
)

// chanHandler is a slog.Handler sending each record's message on its
// channel.
type chanHandler chan<- string

func (h chanHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h chanHandler) Handle(_ context.Context, r slog.Record) error { h <- r.Message; return nil }
func (h chanHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h chanHandler) WithGroup(string) slog.Handler                 { return h }

// writeBundle writes e's bundle at at to path (atomically: a running
// Watch never reads half a file) and returns its bytes.
func (e *env) writeBundle(path string, at time.Time) []byte {
	e.t.Helper()
	b, err := e.ca.Bundle(at)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := atomicfile.WriteBytes(path, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestLiveFederationReload (issue 23, defect 8): a running party's
// federation takes a new valid bundle (a revocation then refuses the
// member, also on a connection verified before: RecheckIdentity), and
// keeps the current one, with a one-line error, for a bundle with a bad
// signature, of another federation, or older than the current (a
// rollback would un-revoke).
func TestLiveFederationReload(t *testing.T) {
	e := newEnv(t)
	is, key := e.certify("col-1", "collaborator")
	e.certify("col-2", "collaborator")
	dir := t.TempDir()
	bundle, root := filepath.Join(dir, "federation.bundle"), filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ca.Root().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	old := e.writeBundle(bundle, t0)
	l, err := LoadLiveFederation(bundle, root)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	chain := []*x509.Certificate{leaf(t, is.Cert, key, now), is.Cert}
	id, err := l.VerifyIdentity(chain, now)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := l.Reload(); changed || err != nil {
		t.Fatalf("Reload of the same bundle: changed %v, %v", changed, err)
	}

	if _, err := e.ca.Revoke("col-1", "test", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	revoked := e.writeBundle(bundle, t0.Add(2*time.Minute))
	if changed, err := l.Reload(); !changed || err != nil {
		t.Fatalf("Reload of the bundle revoking col-1: changed %v, %v", changed, err)
	}
	wantErr(t, l.RecheckIdentity(id, now), `peer "col-1": certificate revoked`)
	_, err = l.VerifyIdentity(chain, now)
	wantErr(t, err, `peer "col-1": certificate revoked`)

	// Refused bundles leave the revocation in force.
	blocks := splitPEM(t, revoked)
	blocks[4].Bytes[len(blocks[4].Bytes)-1] ^= 1
	other := newEnv(t)
	otherBundle, err := other.ca.Bundle(t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		data []byte
		want string
	}{
		{"bad signature", joinPEM(t, blocks), "bad signature by the signing CA"},
		{"older bundle (rollback)", old, "older than the current"},
		{"another federation's bundle", otherBundle, "is not the pinned root"},
		{"not a bundle", []byte("garbage"), "pki: bundle"},
	} {
		if err := os.WriteFile(bundle, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		changed, err := l.Reload()
		if changed {
			t.Errorf("%s: taken", c.what)
		}
		wantErr(t, err, c.want, bundle)
		wantErr(t, l.RecheckIdentity(id, now), "certificate revoked")
	}

	// Watch applies a new bundle within its interval and logs a refused one once.
	if err := os.WriteFile(bundle, revoked, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ca.Revoke("col-2", "test", t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Watch(ctx, 10*time.Millisecond, slog.New(chanHandler(msgs))) }()
	if err := atomicfile.WriteBytes(bundle, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	next := func() string {
		select {
		case m := <-msgs:
			return m
		case <-timeout:
			t.Fatal("Watch logged nothing")
			return ""
		}
	}
	if m := next(); !strings.HasPrefix(m, "federation bundle reload refused, keeping CRL ") || !strings.Contains(m, "pki: bundle") {
		t.Fatalf("first message %q, want the refusal", m)
	}
	e.writeBundle(bundle, t0.Add(4*time.Minute))
	if m := next(); m != "federation bundle reloaded" {
		t.Fatalf("message %q, want the reload (the refusal of one content is logged once)", m)
	}
	cancel()
	<-done
	if len(l.Current().revoked) != 2 {
		t.Errorf("after Watch: %d revoked, want 2", len(l.Current().revoked))
	}
}
