package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teeml/teeml/ratls"
)

// DefaultReloadInterval is how often a running party re-reads its
// federation bundle when its configuration names no interval.
const DefaultReloadInterval = 30 * time.Second

// LiveFederation is a running party's federation: the bundle file is
// re-read (Reload, or Watch every interval) and a new bundle replaces the
// current one only when it is valid — signature by the signing CA, root
// byte-for-byte the pinned root (which is never re-read: it is the trust
// anchor), CRL signed — and its CRL number is not below the current one
// (an older bundle would un-revoke members). A bad new bundle keeps the
// old one. It implements ratls.IdentityVerifier for new handshakes and
// ratls.IdentityRechecker for calls on connections verified before a
// revocation. It is safe for concurrent use.
type LiveFederation struct {
	path string
	root *x509.Certificate
	cur  atomic.Pointer[Federation]

	mu  sync.Mutex // serialises Reload
	raw []byte     // the current bundle's bytes
	// bad is the last refusal's error text and content: Watch logs a
	// refusal once, not at every tick.
	bad struct {
		msg  string
		data []byte
	}
}

var (
	_ ratls.IdentityVerifier  = (*LiveFederation)(nil)
	_ ratls.IdentityRechecker = (*LiveFederation)(nil)
)

// LoadLiveFederation reads the bundle and the pinned root (see
// LoadFederation) and returns a LiveFederation of them.
func LoadLiveFederation(bundlePath, rootPath string) (*LiveFederation, error) {
	f, root, b, err := loadFederationFiles(bundlePath, rootPath)
	if err != nil {
		return nil, err
	}
	l := &LiveFederation{path: bundlePath, root: root, raw: b}
	l.cur.Store(f)
	return l, nil
}

// Current is the federation in force.
func (l *LiveFederation) Current() *Federation { return l.cur.Load() }

// Path is the bundle file.
func (l *LiveFederation) Path() string { return l.path }

// VerifyIdentity implements ratls.IdentityVerifier with the current bundle.
func (l *LiveFederation) VerifyIdentity(chain []*x509.Certificate, now time.Time) (*ratls.Identity, error) {
	return l.Current().VerifyIdentity(chain, now)
}

// RecheckIdentity implements ratls.IdentityRechecker with the current
// bundle (see Federation.RecheckIdentity).
func (l *LiveFederation) RecheckIdentity(id *ratls.Identity, now time.Time) error {
	return l.Current().RecheckIdentity(id, now)
}

// Reload re-reads the bundle file. It reports whether the federation
// changed; on an error the current federation stays in force.
func (l *LiveFederation) Reload() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed, _, err := l.reloadLocked()
	return changed, err
}

// watchReload is Watch's Reload: it also reports whether a refusal is new
// (another error or another content than Watch's last refusal), so that a
// bad bundle is logged once, not at every tick.
func (l *LiveFederation) watchReload() (changed, newRefusal bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed, b, err := l.reloadLocked()
	if err == nil {
		l.bad.msg, l.bad.data = "", nil
		return changed, false, nil
	}
	newRefusal = err.Error() != l.bad.msg || !bytes.Equal(b, l.bad.data)
	l.bad.msg, l.bad.data = err.Error(), b
	return false, newRefusal, err
}

// reloadLocked reads the bundle file and takes it if it changed and
// verifies; it returns what it read. l.mu held.
func (l *LiveFederation) reloadLocked() (bool, []byte, error) {
	b, err := l.read()
	if err != nil || bytes.Equal(b, l.raw) {
		return false, b, err
	}
	f, err := l.check(b)
	if err != nil {
		return false, b, err
	}
	l.raw = b
	l.cur.Store(f)
	return true, b, nil
}

func (l *LiveFederation) read() ([]byte, error) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil, fmt.Errorf("pki: federation bundle: %w", err)
	}
	return b, nil
}

// check verifies a new bundle b against the pinned root and the current
// federation; l.mu held.
func (l *LiveFederation) check(b []byte) (*Federation, error) {
	f, err := NewFederation(b, l.root)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, l.path)
	}
	cur := l.Current()
	if f.name != cur.name {
		return nil, fmt.Errorf("pki: federation bundle %s is of federation %q, not %q", l.path, f.name, cur.name)
	}
	if f.crlNumber().Cmp(cur.crlNumber()) < 0 {
		return nil, fmt.Errorf("pki: federation bundle %s has CRL number %s, older than the current %s: an older bundle would undo revocations",
			l.path, f.crlNumber(), cur.crlNumber())
	}
	return f, nil
}

// Watch calls Reload every interval (DefaultReloadInterval when ≤ 0) until
// ctx ends: one goroutine, run by the caller (go l.Watch(ctx, …)). A
// change is logged at INFO; a refused bundle is logged once per content as
// a one-line ERROR and the current federation stays in force.
func (l *LiveFederation) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, newRefusal, err := l.watchReload()
		switch {
		case err != nil:
			if newRefusal {
				f := l.Current()
				log.Error(fmt.Sprintf("federation bundle reload refused, keeping CRL %s: %v", f.crlNumber(), err),
					"bundle", l.path, "crl_number", f.crlNumber().String())
			}
		case changed:
			f := l.Current()
			log.Info("federation bundle reloaded", "bundle", l.path, "crl_number", f.crlNumber().String(),
				"revoked", len(f.revoked), "members", len(f.members), "crl_next_update", f.crl.NextUpdate.UTC().Format(time.RFC3339))
		}
	}
}

// crlNumber is the CRL's number (0 when it has none).
func (f *Federation) crlNumber() *big.Int {
	if f.crl.Number == nil {
		return new(big.Int)
	}
	return f.crl.Number
}

// RecheckIdentity checks an identity VerifyIdentity accepted earlier (on a
// connection that is still open) against this bundle: the CRL is current,
// the serial is not revoked, and the member list still has it active under
// the same name and role. Refusals are *IdentityError.
func (f *Federation) RecheckIdentity(id *ratls.Identity, now time.Time) error {
	if id == nil {
		return &IdentityError{Reason: "no federation identity"}
	}
	fail := func(format string, args ...any) error {
		return &IdentityError{Peer: id.Name, Reason: fmt.Sprintf(format, args...)}
	}
	if now.After(f.crl.NextUpdate) {
		return fail("federation CRL expired at %s: no current revocation data, refusing (install a fresh federation bundle)",
			f.crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	if now.After(id.NotAfter) {
		return fail("identity certificate expired at %s", id.NotAfter.UTC().Format(time.RFC3339))
	}
	if f.revoked[id.Serial] {
		return fail("certificate revoked")
	}
	m, ok := f.bySerial[id.Serial]
	if ok && m.Status == Revoked {
		return fail("certificate revoked")
	}
	if !ok || m.Name != id.Name || m.Role != id.Role || m.Status != Active {
		return fail("not a federation member for role %s", id.Role)
	}
	return nil
}
