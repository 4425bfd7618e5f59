package psi

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/teeml/teeml/internal/fedtest"
	"github.com/teeml/teeml/internal/testlog"
)

// The RA-TLS federation of internal/fedtest, for the vertical-FL roles: a
// real pki CA, simulated SGX evidence and a policy accepting mrGood.
var (
	mrGood  = fedtest.MRGood
	mrOther = fedtest.MROther
)

const testConfigHash = "91bc0e77c4d1a5f0e3b2a1c09d8e7f6a5b4c3d2e1f00112233445566778899aa"

type vflEnv struct {
	t  testing.TB
	fe *fedtest.Env
}

func newVFLEnv(t testing.TB) *vflEnv {
	t.Helper()
	fe := fedtest.New(t, fedtest.Options{Members: []fedtest.Party{
		{Name: "bank", Role: "leader"}, {Name: "shop", Role: "follower"}, {Name: "shop2", Role: "leader"}}})
	return &vflEnv{t: t, fe: fe}
}

// creds are member name's RA-TLS credentials, its evidence measuring mr.
func (e *vflEnv) creds(name string, mr [32]byte, server bool) credentials.TransportCredentials {
	e.t.Helper()
	return e.fe.Credentials(name, mr, e.fe.CertPolicy, server, testlog.Discard())
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
