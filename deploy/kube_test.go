package deploy_test

// A real etcd and a real kube-apiserver on loopback, for submitting the
// rendered chart to Kubernetes' own validation. deploy/kubetest/build.sh
// builds both from the Go module proxy; .ci/run exports their paths.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
)

// kubeAPI is a running kube-apiserver reached with a static admin token.
type kubeAPI struct {
	url    string
	token  string
	client *http.Client
	// resources maps apiVersion + " " + kind to the resource's path segment
	// and whether it is namespaced, from the server's discovery documents.
	resources map[string]apiResource
}

type apiResource struct {
	name       string
	namespaced bool
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess runs bin with args until the test ends (SIGTERM, then kill
// after 10s), its output in a log file that is printed if the test fails.
func startProcess(t *testing.T, name, bin string, args ...string) <-chan struct{} {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s log (tail):\n%s", name, b)
		}
	})
	return exited
}

// waitHTTP polls url until it answers 200, the deadline passes or the
// process serving it exits.
func waitHTTP(t *testing.T, exited <-chan struct{}, c *http.Client, url, token string, timeout time.Duration) {
	t.Helper()
	var last string
	gone := false
	ok := testenv.WaitFor(timeout, func() bool {
		select {
		case <-exited:
			gone = true
			return true
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b)
		return resp.StatusCode == http.StatusOK
	})
	if gone {
		t.Fatalf("%s: the server exited before it was ready (log below)", url)
	}
	if !ok {
		t.Fatalf("%s not ready after %v: %s", url, timeout, last)
	}
}

// startKube starts etcd and kube-apiserver. Without the binaries
// (TEEML_TEST_ETCD, TEEML_TEST_KUBE_APISERVER) it skips, except with
// TEEML_KUBE_TESTS=1: .ci/run builds them in the background while the
// README's tests run and then runs this test in its own step with that set,
// where missing binaries fail it.
func startKube(t *testing.T) *kubeAPI {
	t.Helper()
	etcdBin, apiBin := os.Getenv("TEEML_TEST_ETCD"), os.Getenv("TEEML_TEST_KUBE_APISERVER")
	for _, b := range []string{etcdBin, apiBin} {
		if fi, err := os.Stat(b); b == "" || err != nil || fi.IsDir() {
			msg := fmt.Sprintf("TEEML_TEST_ETCD=%q and TEEML_TEST_KUBE_APISERVER=%q must name the binaries built by deploy/kubetest/build.sh", etcdBin, apiBin)
			if os.Getenv("TEEML_KUBE_TESTS") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg + " (.ci/run runs this test in its own step, TEEML_KUBE_TESTS=1)")
		}
	}
	dir := t.TempDir()

	clientURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	etcdExited := startProcess(t, "etcd", etcdBin, "--name=teeml-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=teeml-test="+peerURL, "--log-level=warn")
	waitHTTP(t, etcdExited, http.DefaultClient, clientURL+"/health", "", 30*time.Second)

	// The service-account signing key and a static admin token (system:masters).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey, saPub := filepath.Join(dir, "sa-key.pem"), filepath.Join(dir, "sa-pub.pem")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",teeml-admin,teeml-admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	port := freePort(t)
	apiExited := startProcess(t, "kube-apiserver", apiBin,
		"--etcd-servers="+clientURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none", "--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--token-auth-file="+tokens, "--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/24")

	// The serving certificate is self-signed into --cert-dir at startup;
	// trust exactly it rather than skipping verification.
	crtPath := filepath.Join(certDir, "apiserver.crt")
	testenv.Eventually(t, 60*time.Second, "kube-apiserver writes "+crtPath, func() bool {
		b, err := os.ReadFile(crtPath)
		return err == nil && bytes.Contains(b, []byte("END CERTIFICATE"))
	})
	crt, _ := os.ReadFile(crtPath)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(crt) {
		t.Fatalf("%s: no certificate", crtPath)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(c.CloseIdleConnections)
	k := &kubeAPI{url: fmt.Sprintf("https://127.0.0.1:%d", port), token: token, client: c}
	waitHTTP(t, apiExited, c, k.url+"/readyz", token, 120*time.Second)
	return k
}

// do sends a JSON request and returns the status and the decoded body.
func (k *kubeAPI) do(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, k.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+k.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: HTTP %d, not JSON: %v: %.300s", method, path, resp.StatusCode, err, b)
	}
	return resp.StatusCode, out
}

// resource finds apiVersion/kind in the server's discovery (loaded once
// per group version).
func (k *kubeAPI) resource(t *testing.T, apiVersion, kind string) (string, apiResource) {
	t.Helper()
	base := "/apis/" + apiVersion
	if apiVersion == "v1" {
		base = "/api/v1"
	}
	if k.resources == nil {
		k.resources = map[string]apiResource{}
	}
	if _, loaded := k.resources[apiVersion]; !loaded {
		code, list := k.do(t, http.MethodGet, base, nil)
		if code != http.StatusOK {
			t.Fatalf("discovery %s: HTTP %d: %v", base, code, list["message"])
		}
		rs, _ := list["resources"].([]any)
		for _, x := range rs {
			m, _ := x.(map[string]any)
			name, _ := m["name"].(string)
			if strings.Contains(name, "/") { // subresources
				continue
			}
			kd, _ := m["kind"].(string)
			ns, _ := m["namespaced"].(bool)
			k.resources[apiVersion+" "+kd] = apiResource{name: name, namespaced: ns}
		}
		k.resources[apiVersion] = apiResource{}
	}
	res, ok := k.resources[apiVersion+" "+kind]
	if !ok {
		t.Fatalf("the API server serves no %s %s", apiVersion, kind)
	}
	return base, res
}

// create POSTs obj (a decoded manifest) with strict field validation, so
// an unknown or duplicated field is an error rather than a warning, and
// returns the status and the server's answer.
func (k *kubeAPI) create(t *testing.T, namespace string, obj map[string]any) (int, map[string]any) {
	t.Helper()
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	base, res := k.resource(t, apiVersion, kind)
	path := base + "/" + res.name
	if res.namespaced {
		path = base + "/namespaces/" + namespace + "/" + res.name
	}
	return k.do(t, http.MethodPost, path+"?fieldValidation=Strict", obj)
}
