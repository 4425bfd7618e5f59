package party_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/ratls"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustPolicy(t *testing.T, roles ...string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(partysim.Policy(roles...), "test policy")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// federation is a simulated workspace with an aggregator "agg" and a
// collaborator "col-1".
func federation(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	pol := mustPolicy(t, "aggregator", "collaborator")
	roles := map[string]string{"agg": "aggregator", "col-1": "collaborator"}
	if err := partysim.Federation(context.Background(), ws, "test", roles, map[string]*policy.Policy{"aggregator": pol, "collaborator": pol}); err != nil {
		t.Fatal(err)
	}
	return ws
}

func TestConfigStrict(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"platform: sim\nsim_key: x\n", "sim_key"},
		{"platform: sgx\n", "platform"},
		{"platform: sim\nsim: 3\n", "p.yaml:2: sim"},
		{"platform: sim\nplatform: tsm\n", "duplicate"},
		{"platform: sim\nfederation_reload: 10ms\n", "p.yaml:2: federation_reload: 10ms: want at least 100ms"},
		{"platform: sim\nfederation_reload: -1s\n", "p.yaml:2: federation_reload"},
		{"platform: sim\nfederation_reload: soon\n", "federation_reload"},
	} {
		_, err := party.ParseConfig([]byte(tc.yaml), "p.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "p.yaml") || !errors.Is(err, party.ErrConfig) {
			t.Errorf("%q: err %v, want a one-line ErrConfig naming p.yaml and %s", tc.yaml, err, tc.want)
		}
	}
	c, err := party.ParseConfig([]byte("platform: sim\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Sim.TEE != "sgx" || !c.Simulated() {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := c.Issuer(t.TempDir(), quiet()); err == nil || !errors.Is(err, party.ErrConfig) {
		t.Errorf("platform sim without sim.key: %v", err)
	}
	if _, err := party.LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// Round trip.
	c2, err := party.ParseConfig(c.Marshal(), "again")
	if err != nil || *c2 != *c {
		t.Errorf("round trip: %+v, %v", c2, err)
	}
	c.FederationReload = 1500 * time.Millisecond
	if c3, err := party.ParseConfig(c.Marshal(), "again"); err != nil || c3.FederationReload != 1500*time.Millisecond {
		t.Errorf("federation_reload round trip: %+v, %v", c3, err)
	}
}

func TestLoadChecksIdentity(t *testing.T) {
	ws := federation(t)
	p, err := party.Load(party.WorkspaceFiles(ws, "agg"), "agg", "aggregator", quiet())
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "agg" || p.Role != "aggregator" || !p.PKI() || !p.Simulated() || p.Federation == nil {
		t.Fatalf("loaded %+v", p)
	}
	if p, err := party.Load(party.WorkspaceFiles(ws, "col-1"), "col-1", "", quiet()); err != nil || p.Role != "collaborator" {
		t.Fatalf("any role: %v %v", p, err)
	}
	if _, err := party.Load(party.WorkspaceFiles(ws, "agg"), "agg", "collaborator", quiet()); err == nil || !strings.Contains(err.Error(), "want collaborator") {
		t.Errorf("wrong role: %v", err)
	}
	f := party.WorkspaceFiles(ws, "agg")
	f.Cert = party.WorkspaceFiles(ws, "col-1").Cert
	if _, err := party.Load(f, "agg", "", quiet()); err == nil || !strings.Contains(err.Error(), `names "col-1", not "agg"`) {
		t.Errorf("someone else's certificate: %v", err)
	}
	f = party.WorkspaceFiles(ws, "agg")
	f.Root = ""
	if _, err := party.Load(f, "agg", "", quiet()); err == nil || !strings.Contains(err.Error(), "federation root") {
		t.Errorf("no root: %v", err)
	}
	if _, err := party.Load(party.WorkspaceFiles(ws, "agg"), "../agg", "", quiet()); err == nil {
		t.Error("bad member name accepted")
	}
}

// serve runs a gRPC health service over creds on loopback.
func serve(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func check(ctx context.Context, addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func credsOf(t *testing.T, p *party.Party, peer party.Peer, server bool) credentials.TransportCredentials {
	t.Helper()
	c, stop, err := p.Credentials(context.Background(), peer, server, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return c
}

// A federation channel works between the roles the policy admits, and a
// refusal is recognised through the gRPC status it ends up in.
func TestCredentialsPKI(t *testing.T) {
	ws := federation(t)
	agg, err := party.Load(party.WorkspaceFiles(ws, "agg"), "agg", "aggregator", quiet())
	if err != nil {
		t.Fatal(err)
	}
	col, err := party.Load(party.WorkspaceFiles(ws, "col-1"), "col-1", "collaborator", quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, credsOf(t, agg, party.Peer{Role: "collaborator", Policy: mustPolicy(t, "collaborator")}, true))
	ctx := context.Background()
	if err := check(ctx, addr, credsOf(t, col, party.Peer{Role: "aggregator", Policy: mustPolicy(t, "aggregator")}, false)); err != nil {
		t.Fatalf("federation channel: %v", err)
	}
	// The collaborator holds the aggregator to a policy that admits only
	// the key broker's measurement: refused, by policy, and the refusal
	// survives gRPC's flattening into a status.
	err = check(ctx, addr, credsOf(t, col, party.Peer{Role: "aggregator", Policy: mustPolicy(t, "kms")}, false))
	r, ok := ratls.RefusalOf(err)
	if !ok || r.Check != ratls.CheckPolicy || strings.Contains(r.Reason, "\n") {
		t.Fatalf("refusal not recognised: %v (%+v)", err, r)
	}
	if _, _, err := col.Credentials(ctx, party.Peer{Role: "aggregator"}, false, quiet()); !errors.Is(err, party.ErrNoPolicy) {
		t.Errorf("no policy: %v", err)
	}
}

// Attestation-only parties (vertical FL) verify each other by evidence
// and policy alone; a party claiming another measurement is refused.
func TestCredentialsAttested(t *testing.T) {
	dir := t.TempDir()
	if err := partysim.Parties(dir, map[string]string{"leader": "leader", "follower": "follower"}); err != nil {
		t.Fatal(err)
	}
	load := func(role string) *party.Party {
		p, err := party.LoadAttested(party.Files{Dir: dir, Config: party.ConfigFile(dir, role)}, role, quiet())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	leader, follower := load("leader"), load("follower")
	if leader.PKI() || leader.Name != "leader" {
		t.Fatalf("leader %+v", leader)
	}
	c, err := leader.SelfClaims(context.Background(), "test")
	if mr, _ := partysim.Measurement("leader"); err != nil || !c.Simulated || !bytes.Equal(c.MREnclave, mr[:]) {
		t.Fatalf("self claims %+v, %v", c, err)
	}
	addr := serve(t, credsOf(t, follower, party.Peer{Role: "leader", Policy: mustPolicy(t, "leader")}, true))
	if err := check(context.Background(), addr, credsOf(t, leader, party.Peer{Role: "follower", Policy: mustPolicy(t, "follower")}, false)); err != nil {
		t.Fatalf("attested channel: %v", err)
	}
	// The leader's policy for the follower wrongly names the leader's
	// measurement.
	wrong, err := policy.Parse([]byte(strings.Replace(string(partysim.Policy("leader")), "  leader:", "  follower:", 1)), "wrong")
	if err != nil {
		t.Fatal(err)
	}
	err = check(context.Background(), addr, credsOf(t, leader, party.Peer{Role: "follower", Policy: wrong}, false))
	if r, ok := ratls.RefusalOf(err); !ok || r.Check != ratls.CheckPolicy || !strings.Contains(r.Reason, `peer "follower"`) {
		t.Fatalf("wrong measurement: %v", err)
	}
	if _, _, err := leader.DialBroker(context.Background(), "127.0.0.1:1", mustPolicy(t, "kms"), quiet()); err == nil {
		t.Error("an attestation-only party dialled a key broker")
	}
}

func TestAnnounce(t *testing.T) {
	var out, logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := &party.Config{Platform: party.PlatformSim, TrustedSimKeys: "party/sim-trusted.pem"}
	if !party.Announce(&out, log, c, "root key file /x") {
		t.Fatal("simulated party not announced")
	}
	want := "*** " + sim.Banner + ` (platform sim, trusted_sim_keys "party/sim-trusted.pem", root key file /x) ***` + "\n"
	if out.String() != want || !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "SIMULATION") {
		t.Errorf("announced %q, logged %q", out.String(), logs.String())
	}
	out.Reset()
	if party.Announce(&out, log, &party.Config{Platform: party.PlatformTSM}) || out.Len() != 0 {
		t.Errorf("hardware party announced simulation: %q", out.String())
	}
	if !party.Announce(&out, log, &party.Config{Platform: party.PlatformTSM}, "data key file k.json") || !strings.Contains(out.String(), "data key file k.json") {
		t.Errorf("simulated key file not announced: %q", out.String())
	}
}

func TestKeySource(t *testing.T) {
	ws := federation(t)
	p, err := party.Load(party.WorkspaceFiles(ws, "col-1"), "col-1", "", quiet())
	if err != nil {
		t.Fatal(err)
	}
	if ks, _, ok, err := p.KeySource(context.Background(), quiet()); ks != nil || ok || err != nil {
		t.Fatalf("no kms section: %v %v %v", ks, ok, err)
	}
	p.Config.KMS = &party.KMSConfig{Broker: "127.0.0.1:1"}
	if _, _, ok, err := p.KeySource(context.Background(), quiet()); !ok || !errors.Is(err, party.ErrConfig) || !strings.Contains(err.Error(), "broker and policy") {
		t.Fatalf("kms without policy: %v", err)
	}
	if err := os.WriteFile(filepath.Join(ws, "kms.yaml"), partysim.Policy("aggregator"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Config.KMS.Policy = "kms.yaml"
	if _, _, _, err := p.KeySource(context.Background(), quiet()); err == nil || !strings.Contains(err.Error(), "no role kms") {
		t.Fatalf("policy without role kms: %v", err)
	}
}

func TestReadAttestationResult(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := party.ReadAttestationResult(write("ok.jwt", "\n aGVhZA.cGF5bG9hZA.c2ln \n")); err != nil || tok != "aGVhZA.cGF5bG9hZA.c2ln" {
		t.Fatalf("token %q %v", tok, err)
	}
	for name, body := range map[string]string{"two.jwt": "a.b", "space.jwt": "a.b c.d", "empty.jwt": ""} {
		if _, err := party.ReadAttestationResult(write(name, body)); err == nil || !strings.Contains(err.Error(), "not a JWT") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := party.ReadAttestationResult(filepath.Join(dir, "missing.jwt")); err == nil || !strings.Contains(err.Error(), "missing.jwt") {
		t.Errorf("missing file: %v", err)
	}
}
