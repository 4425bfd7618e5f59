package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/internal/testenv"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/party/partysim"
)

// needPythonClient skips (outside CI) unless Debian's python3 with requests
// and cryptography is there.
func needPythonClient(t *testing.T) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import requests, cryptography").Run(); err != nil {
		testenv.MustRun(t, "needs /usr/bin/python3 with python3-requests and python3-cryptography: %v", err)
	}
}

// TestPythonClientPinnedKey (issue 17, conformance): a client that cannot do
// RA-TLS — Python's requests — trusts the key pin `teeml attest
// verify-server` prints (checked here by party.VerifyServer against the
// server policy), walks the Open Inference Protocol's REST endpoints and
// checks every answer's shape as the specification gives it
// (serve/testdata/oip_client.py), and gets the very predictions the model
// makes in this process (teeml predict's). With another key's pin it stops
// after the handshake, before any request is written.
func TestPythonClientPinnedKey(t *testing.T) {
	needPythonClient(t)
	model := digitsModel(t)
	dir := t.TempDir()
	if err := partysim.Parties(dir, map[string]string{"srv": Role, "other": Role, "cli": "client"}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "serving.yaml")
	os.WriteFile(repo, []byte(fmt.Sprintf("models:\n  - name: digits\n    kind: teeml\n    file: %s\n", model)), 0o644)
	tokens := filepath.Join(dir, "tokens.yaml")
	tok, err := NewToken(tokens, "analyst")
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, dir, "srv", repo, tokens)
	other := start(t, dir, "other", repo, tokens)

	cli, peer := simClient(t, dir)
	ctx := context.Background()
	_, pin, err := cli.VerifyServer(ctx, srv.http, peer, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}
	_, otherPin, err := cli.VerifyServer(ctx, other.http, peer, testlog.Discard())
	if err != nil {
		t.Fatal(err)
	}

	const n = 5
	x, want := expected(t, model, n)
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = x[i*64 : (i+1)*64]
	}
	rowsFile := filepath.Join(dir, "rows.json")
	b, _ := json.Marshal(rows)
	os.WriteFile(rowsFile, b, 0o644)

	run := func(url, pin string) (string, string, error) {
		cmd := exec.Command("/usr/bin/python3", "testdata/oip_client.py", url, pin, tok, "digits", rowsFile)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		return o.String(), e.String(), err
	}
	out, stderr, err := run("https://"+srv.http, pin)
	if err != nil {
		t.Fatalf("python client: %v\n%s\n%s", err, stderr, out)
	}
	var got struct {
		Outputs [][]float64    `json:"outputs"`
		Server  map[string]any `json:"server"`
		Error   string         `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	if len(got.Outputs) != n {
		t.Fatalf("python got %d rows, want %d", len(got.Outputs), n)
	}
	k := len(want) / n
	for i, r := range got.Outputs {
		for j, v := range r {
			if math.Abs(v-float64(want[i*k+j])) > 1e-6 {
				t.Fatalf("row %d output %d: python %v, model %v", i, j, v, want[i*k+j])
			}
		}
	}
	if got.Server["name"] != "teeml" || !strings.Contains(got.Error, "shape") {
		t.Errorf("server metadata %v, malformed-request error %q", got.Server, got.Error)
	}
	// The other server's pin: the client stops before sending anything.
	_, stderr, err = run("https://"+srv.http, otherPin)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(stderr, "pin check failed before any request") {
		t.Fatalf("wrong pin: %v\n%s", err, stderr)
	}
}
