package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	inferencev2 "github.com/teeml/teeml/api/proto/teeml/inference/v2"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/serve/client"
	"github.com/teeml/teeml/serve/oip"
)

// simClient loads dir's attestation-only party "cli" and the peer it holds
// servers to: role serving under partysim's policy.
func simClient(t *testing.T, dir string) (*party.Party, party.Peer) {
	t.Helper()
	cli, err := party.LoadAttested(party.Files{Dir: dir, Config: party.ConfigFile(dir, "cli")}, "client", testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(partysim.Policy(Role), "policy")
	if err != nil {
		t.Fatal(err)
	}
	return cli, party.Peer{Role: Role, Policy: pol}
}

type running struct {
	http, grpc string
	stop       func() error
}

func start(t *testing.T, dir, member, repo, tokens string, opts ...func(*RunOptions)) *running {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	errc := make(chan error, 1)
	go func() {
		o := RunOptions{Repository: repo, Workspace: dir, Name: member, HTTPListen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0", Tokens: tokens,
			Log: testlog.Discard(), Ready: func(h, g string) { ready <- [2]string{h, g} }}
		for _, f := range opts {
			f(&o)
		}
		errc <- Run(ctx, o)
	}()
	select {
	case a := <-ready:
		r := &running{http: a[0], grpc: a[1], stop: func() error { cancel(); return <-errc }}
		t.Cleanup(func() { cancel() })
		return r
	case err := <-errc:
		cancel()
		t.Fatalf("serve %s: %v", member, err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("serve did not start")
	}
	return nil
}

func TestServeOverRATLS(t *testing.T) {
	model := digitsModel(t)
	dir := t.TempDir()
	if err := partysim.Parties(dir, map[string]string{"srv": Role, "cli": "client", "evil": "collaborator"}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "serving.yaml")
	os.WriteFile(repo, []byte(fmt.Sprintf("models:\n  - name: digits\n    kind: teeml\n    file: %s\n    batching: {max_batch_size: 16, max_queue_delay: 1ms}\n", model)), 0o644)
	tokens := filepath.Join(dir, "tokens.yaml")
	tok, err := NewToken(tokens, "analyst")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewToken(tokens, "analyst"); err == nil {
		t.Fatal("second token under one name accepted")
	}
	var srvOut testlog.Buffer
	srv := start(t, dir, "srv", repo, tokens, func(o *RunOptions) { o.UIAddr, o.Out = "127.0.0.1:0", &srvOut })
	evil := start(t, dir, "evil", repo, tokens)

	cli, peer := simClient(t, dir)
	tc, creds, err := cli.ClientTLS(peer, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	x, want := expected(t, model, 4)
	rows := [][]float32{x[:64], x[64:128], x[128:192], x[192:256]}
	c := client.New("https://"+srv.http, tc, tok)
	defer c.Close()
	ctx := context.Background()
	got, err := c.Infer(ctx, "digits", rows)
	if err != nil {
		t.Fatal(err)
	}
	if got[3][9] != want[39] || got[0][0] != want[0] {
		t.Fatalf("REST over RA-TLS: %v vs %v", got[0], want[:10])
	}
	// The server in another enclave is refused before any input is sent.
	ce := client.New("https://"+evil.http, tc, tok)
	defer ce.Close()
	if _, err := ce.Infer(ctx, "digits", rows); err == nil || !strings.Contains(err.Error(), "mr_enclave") {
		t.Fatalf("wrong measurement: %v", err)
	}
	vp, pin, err := cli.VerifyServer(ctx, srv.http, peer, testlog.Discard())
	if err != nil || !strings.HasPrefix(pin, "sha256//") || vp.Claims == nil || !vp.Claims.Simulated {
		t.Fatalf("verify-server: %v %q %v", vp, pin, err)
	}
	if _, _, err := cli.VerifyServer(ctx, evil.http, peer, testlog.Discard()); err == nil {
		t.Fatal("verify-server accepted the wrong measurement")
	}
	// gRPC over RA-TLS.
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := inferencev2.NewGRPCInferenceServiceClient(conn)
	gctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	r, err := g.ModelInfer(gctx, &inferencev2.ModelInferRequest{ModelName: "digits", Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{
		{Name: "input", Datatype: "FP32", Shape: []int64{4, 64}, Contents: &inferencev2.InferTensorContents{Fp32Contents: x}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := oip.ValuesFromProto(r, 0)
	if err != nil || float32(out.Values[39]) != want[39] {
		t.Fatalf("gRPC over RA-TLS: %v %v", out, err)
	}
	// The dashboard (--ui-addr) counts the two served requests.
	checkDashboard(t, srvOut.String(), "digits", 2)
	// Graceful drain: Run returns without error once stopped.
	if err := srv.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("drain: %v", err)
	}
}

// TestServeMembersByMutualRATLS (issue 17, trust on both sides): with
// --client-policy, federation members authenticate by their RA-TLS
// identity instead of a token: the caller is the member's name, held to
// the model's access list; a member not on it is refused (403), a client
// with neither certificate nor token is refused (401). When the CA revokes
// a member and writes a new bundle, the server's next answer to that
// member on its already open connection is a refusal (403), with no
// restart.
func TestServeMembersByMutualRATLS(t *testing.T) {
	model := digitsModel(t)
	dir := t.TempDir()
	roles := map[string]string{"srv": Role, "ana": "analytics", "other": "analytics"}
	pols := map[string]*policy.Policy{}
	for _, r := range roles {
		p, err := policy.Parse(partysim.Policy(r), r)
		if err != nil {
			t.Fatal(err)
		}
		pols[r] = p
	}
	if err := partysim.Federation(context.Background(), dir, "serving-test", roles, pols); err != nil {
		t.Fatal(err)
	}
	cfgPath := party.ConfigFile(dir, "srv")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append(b, "federation_reload: 100ms\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "serving.yaml")
	os.WriteFile(repo, []byte(fmt.Sprintf("models:\n  - name: digits\n    kind: teeml\n    file: %s\n    access: [ana]\n", model)), 0o644)
	clientPol := filepath.Join(dir, "clients.yaml")
	os.WriteFile(clientPol, partysim.Policy("analytics"), 0o644)
	serverPol := filepath.Join(dir, "server.yaml")
	os.WriteFile(serverPol, partysim.Policy(Role), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan [2]string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, RunOptions{Repository: repo, Workspace: dir, Name: "srv", HTTPListen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0",
			ClientPolicy: clientPol, Log: testlog.Discard(), Ready: func(h, g string) { ready <- [2]string{h, g} }})
	}()
	var url, grpcAddr string
	select {
	case a := <-ready:
		url, grpcAddr = "https://"+a[0], a[1]
	case err := <-errc:
		t.Fatalf("serve: %v", err)
	}
	x, want := expected(t, model, 1)
	rows := [][]float32{x}

	ana, err := client.Dial(url, "", client.Trust{Workspace: dir, Name: "ana", Policy: serverPol, Log: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer ana.Close()
	got, err := ana.Infer(ctx, "digits", rows)
	if err != nil || got[0][0] != want[0] {
		t.Fatalf("member ana without a token: %v %v", got, err)
	}
	// gRPC: the member's mutual RA-TLS credentials, no token either.
	anaParty, err := party.Load(party.WorkspaceFiles(dir, "ana"), "ana", "", testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	creds, stopCreds, err := anaParty.Credentials(ctx, party.Peer{Role: Role, Policy: pols[Role]}, false, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer stopCreds()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r, err := inferencev2.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, &inferencev2.ModelInferRequest{ModelName: "digits",
		Inputs: []*inferencev2.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 64},
			Contents: &inferencev2.InferTensorContents{Fp32Contents: x}}}})
	if err != nil {
		t.Fatalf("member ana over gRPC without a token: %v", err)
	}
	if out, err := oip.ValuesFromProto(r, 0); err != nil || float32(out.Values[0]) != want[0] {
		t.Fatalf("gRPC answer %v %v", out, err)
	}
	other, err := client.Dial(url, "", client.Trust{Workspace: dir, Name: "other", Policy: serverPol, Log: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var ce *client.Error
	if _, err := other.Infer(ctx, "digits", rows); !errors.As(err, &ce) || ce.Code != 403 || !strings.Contains(ce.Msg, `caller "other" may not use model digits`) {
		t.Fatalf("member not on the access list: %v", err)
	}
	anon, err := client.Dial(url, "", client.Trust{PartyConfig: party.ConfigFile(dir, "ana"), Policy: serverPol, Log: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Infer(ctx, "digits", rows); !errors.As(err, &ce) || ce.Code != 401 || !strings.Contains(ce.Msg, "no federation certificate and no API token") {
		t.Fatalf("client with neither certificate nor token: %v", err)
	}

	ca, err := pki.OpenCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := ca.Revoke("ana", "test: revoked while connected", now); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteBundle(party.WorkspaceFiles(dir, "").Bundle, now); err != nil {
		t.Fatal(err)
	}
	var last error
	if !testenv.WaitFor(30*time.Second, func() bool {
		_, last = ana.Infer(ctx, "digits", rows)
		return errors.As(last, &ce) && ce.Code == 403
	}) {
		t.Fatalf("revoked member still served (last answer %v)", last)
	}
	if !strings.Contains(ce.Msg, `federation identity "ana" no longer accepted`) || !strings.Contains(ce.Msg, "revoked") {
		t.Errorf("refusal %q does not say the identity was revoked", ce.Msg)
	}
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("drain: %v", err)
	}
}

// checkDashboard logs in to the server's dashboard with the one-time
// token printed in out and finds model's row with requests served.
func checkDashboard(t *testing.T, out, model string, requests int) {
	t.Helper()
	m := regexp.MustCompile(`dashboard: one-time login: (https://\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no dashboard login line in:\n%s", out)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the dashboard's self-signed certificate
	resp, err := c.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("dashboard login: %d", resp.StatusCode)
	}
	resp, err = c.Get(strings.TrimSuffix(m[1][:strings.Index(m[1], "/login")], "/") + "/serving")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`<tr data-service="inference"><td>inference</td><td>%s</td>`, model)
	i := strings.Index(string(b), want)
	if resp.StatusCode != 200 || i < 0 {
		t.Fatalf("dashboard /serving: %d, no row for %s:\n%s", resp.StatusCode, model, b)
	}
	row := string(b[i:])
	row = row[:strings.Index(row, "</tr>")]
	if cells := strings.Split(row, `<td class="num">`); len(cells) < 2 || !strings.HasPrefix(cells[1], fmt.Sprintf("%d<", requests)) {
		t.Errorf("dashboard row %s, want %d requests", row, requests)
	}
}
