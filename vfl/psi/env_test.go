package psi

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
)

// The RA-TLS test setup of ratls and fl/protocol, for the vertical-FL roles:
// a real pki CA, simulated SGX evidence and a policy accepting mrGood.
var (
	mrGood  = [32]byte{0x11, 0x22, 0x33, 0x44, 1}
	mrOther = [32]byte{0x81, 0x5f, 0x00, 0x01, 2}
	mrSign  = [32]byte{0xaa, 0xbb, 0xcc, 0xdd, 3}
)

const testConfigHash = "91bc0e77c4d1a5f0e3b2a1c09d8e7f6a5b4c3d2e1f00112233445566778899aa"

type member struct {
	name, role string
	key        *ecdsa.PrivateKey
	issued     *pki.Issued
}

type vflEnv struct {
	t       testing.TB
	simKey  *ecdsa.PrivateKey
	ev      attest.Verifier
	pol     *policy.Policy
	fed     *pki.Federation
	members map[string]*member
}

func newVFLEnv(t testing.TB) *vflEnv {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	k, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sv, err := sim.NewVerifier(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sv.Logger = testlog.Discard()
	e := &vflEnv{t: t, simKey: k, ev: sv, members: map[string]*member{}}
	var y strings.Builder
	y.WriteString("roles:\n")
	for _, role := range []string{"leader", "follower"} {
		fmt.Fprintf(&y, "  %s:\n    sgx:\n      - mr_enclave: %s\n        mr_signer: %s\n    allow_simulation: true\n",
			role, hex.EncodeToString(mrGood[:]), hex.EncodeToString(mrSign[:]))
	}
	if e.pol, err = policy.Parse([]byte(y.String()), "policy.yaml"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.InitOptions{Federation: "test", Now: now.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]string{"bank": "leader", "shop": "follower", "shop2": "leader"} {
		key, err := pki.GenerateKey(pki.P256)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := pki.NewCSR(ctx, key, name, role, e.issuer(mrGood))
		if err != nil {
			t.Fatal(err)
		}
		issued, err := ca.Certify(ctx, csr, e.pol, e.ev, now)
		if err != nil {
			t.Fatal(err)
		}
		e.members[name] = &member{name: name, role: role, key: key, issued: issued}
	}
	bundle := filepath.Join(dir, "federation.bundle")
	if _, err := ca.WriteBundle(bundle, now); err != nil {
		t.Fatal(err)
	}
	if e.fed, err = pki.LoadFederation(bundle, filepath.Join(ca.Dir(), pki.RootCertFile)); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *vflEnv) issuer(mr [32]byte) attest.Issuer {
	iss, err := sim.NewIssuer(e.simKey, sim.Identity{TEE: attest.SGX, MREnclave: mr, MRSigner: mrSign})
	if err != nil {
		e.t.Fatal(err)
	}
	iss.Logger = testlog.Discard()
	return iss
}

// creds are member name's RA-TLS credentials, its evidence measuring mr.
func (e *vflEnv) creds(name string, mr [32]byte, server bool) credentials.TransportCredentials {
	e.t.Helper()
	m := e.members[name]
	c, err := ratls.NewCertificate(context.Background(), e.issuer(mr), ratls.CertOptions{Parent: m.issued.Cert, ParentKey: m.key})
	if err != nil {
		e.t.Fatal(err)
	}
	v, err := ratls.NewVerifier(ratls.Config{Evidence: e.ev, Policy: e.pol, Identity: e.fed, Logger: testlog.Discard()})
	if err != nil {
		e.t.Fatal(err)
	}
	tc := ratls.TransportConfig{Certificates: ratls.StaticCertificate{Cert: &c}, Verifier: v, Logger: testlog.Discard()}
	if server {
		cr, err := ratls.NewServerCredentials(tc)
		if err != nil {
			e.t.Fatal(err)
		}
		return cr
	}
	cr, err := ratls.NewClientCredentials(tc)
	if err != nil {
		e.t.Fatal(err)
	}
	return cr
}

// party is one side of a test session.
type party struct {
	name string
	role Role
	mr   [32]byte
	ids  []string
	cfg  Config // Role, Self, Mode and ConfigHash are filled in
	out  string
}

type pairResult struct {
	res  [2]*Result
	errs [2]error
	outs [2][]string
}

// runPair runs a session between parties a (listening) and b (dialing) on
// loopback and reads their outputs.
func (e *vflEnv) runPair(mode Mode, a, b *party) pairResult {
	e.t.Helper()
	// Generous: the 1M test takes minutes of CPU, and CI machines are shared.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir := e.t.TempDir()
	var sets [2]*Set
	for i, p := range []*party{a, b} {
		s, err := Prepare(strings.NewReader(joinLines(p.ids)), p.name, PrepareOptions{TempDir: dir, MemoryBudget: p.cfg.MemoryBudget})
		if err != nil {
			e.t.Fatal(err)
		}
		defer s.Close()
		sets[i] = s
		p.out = filepath.Join(dir, p.name+".aligned")
		p.cfg.Role = p.role
		if p.cfg.Self == "" {
			p.cfg.Self = p.name
		}
		if p.cfg.Mode == 0 {
			p.cfg.Mode = mode
		}
		if p.cfg.ConfigHash == "" {
			p.cfg.ConfigHash = testConfigHash
		}
		if p.cfg.Logger == nil {
			p.cfg.Logger = testlog.Discard()
		}
		p.cfg.TempDir = dir
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	var r pairResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.res[0], r.errs[0] = Serve(ctx, lis, e.creds(a.name, a.mr, true), a.cfg, sets[0], a.out)
	}()
	r.res[1], r.errs[1] = Dial(ctx, lis.Addr().String(), e.creds(b.name, b.mr, false), b.cfg, sets[1], b.out)
	if r.errs[1] != nil {
		// A refused dialer never reaches the listener's handler.
		time.AfterFunc(3*time.Second, cancel)
	}
	<-done
	for i, p := range []*party{a, b} {
		if r.errs[i] == nil && r.res[i].Learned {
			r.outs[i] = readLines(e.t, p.out)
		}
	}
	return r
}

func joinLines(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return strings.Join(ids, "\n") + "\n"
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// plainIntersection is the reference: the sorted distinct common IDs after
// normalisation.
func plainIntersection(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range a {
		in[NormalizeID(x)] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, y := range b {
		y = NormalizeID(y)
		if in[y] && !seen[y] {
			seen[y] = true
			out = append(out, y)
		}
	}
	slices.Sort(out)
	return out
}

func quietLogger() *slog.Logger { return testlog.Discard() }
