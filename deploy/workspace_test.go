package deploy_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/deploy"
)

func workspace(t *testing.T, platform string) string {
	t.Helper()
	ws := t.TempDir()
	for _, n := range []string{"aggregator", "col-1", "col-2"} {
		for p, body := range map[string]string{
			"pki/" + n + ".crt":     "-----BEGIN CERTIFICATE-----\n" + n + "\n-----END CERTIFICATE-----\n",
			"pki/" + n + "-key.pem": "-----BEGIN EC PRIVATE KEY-----\n" + n + "\n-----END EC PRIVATE KEY-----\n",
			"party/" + n + ".yaml":  "platform: " + platform + "\n",
		} {
			os.MkdirAll(filepath.Join(ws, filepath.Dir(p)), 0o755)
			if err := os.WriteFile(filepath.Join(ws, p), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ws
}

func TestWriteK8sFromWorkspace(t *testing.T) {
	ws := workspace(t, "gramine")
	out := filepath.Join(t.TempDir(), "k8s")
	f := deploy.Federation{Workspace: ws, Aggregator: "aggregator", AggregatorPort: 50443, Collaborators: []string{"col-1", "col-2"},
		Image: "registry.example/teeml@sha256:" + strings.Repeat("cd", 32), Platform: "sgx"}
	if err := deploy.WriteK8s(out, f, "fed"); err != nil {
		t.Fatal(err)
	}
	vb, err := os.ReadFile(filepath.Join(out, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(vb), "PRIVATE KEY") || !strings.Contains(string(vb), "port: 50443") || !strings.Contains(string(vb), "teeml-col-2-identity") {
		t.Fatalf("values.yaml:\n%s", vb)
	}
	var values map[string]any
	if err := yaml.Unmarshal(vb, &values); err != nil {
		t.Fatal(err)
	}
	if _, err := deploy.Render(values, "fed", "fed"); err != nil {
		t.Fatalf("written values do not render: %v", err)
	}
	fi, err := os.Stat(filepath.Join(out, "secrets.yaml"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.yaml: %v mode %v", err, fi.Mode())
	}
	sb, _ := os.ReadFile(filepath.Join(out, "secrets.yaml"))
	docs := strings.Split(string(sb), "---\n")
	if len(docs) != 3 {
		t.Fatalf("%d Secrets, want 3", len(docs))
	}
	var s struct {
		Kind     string            `yaml:"kind"`
		Metadata map[string]any    `yaml:"metadata"`
		Data     map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &s); err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(s.Data["identity-key.pem"])
	if s.Kind != "Secret" || s.Metadata["name"] != "teeml-col-1-identity" || s.Metadata["namespace"] != "fed" || !strings.Contains(string(key), "col-1") {
		t.Fatalf("secret: %+v", s)
	}
}

func TestWriteK8sRefuses(t *testing.T) {
	good := deploy.Federation{Aggregator: "aggregator", AggregatorPort: 50443, Collaborators: []string{"col-1"},
		Image: "teeml:1", Platform: "sgx"}
	for _, tc := range []struct {
		name string
		ws   string
		mod  func(*deploy.Federation)
		want string
		is   error
	}{
		{"simulated party", "sim", func(*deploy.Federation) {}, "party aggregator", deploy.ErrSimulated},
		{"unknown party", "gramine", func(f *deploy.Federation) { f.Collaborators = []string{"col-9"} }, "col-9.yaml", nil},
		{"missing key", "gramine", func(*deploy.Federation) {}, "col-1-key.pem", nil},
		{"bad image", "gramine", func(f *deploy.Federation) { f.Image = "teeml" }, "REPOSITORY", nil},
		{"tdx without runtime class", "gramine", func(f *deploy.Federation) { f.Platform = "tdx" }, "runtimeClassName", deploy.ErrValues},
		{"bad port", "gramine", func(f *deploy.Federation) { f.AggregatorPort = 0 }, "port", deploy.ErrValues},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := good
			f.Workspace = workspace(t, tc.ws)
			tc.mod(&f)
			if tc.name == "missing key" {
				os.Remove(filepath.Join(f.Workspace, "pki", "col-1-key.pem"))
			}
			out := filepath.Join(t.TempDir(), "k8s")
			err := deploy.WriteK8s(out, f, "default")
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("error %v, want one line with %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(out, "secrets.yaml")); !os.IsNotExist(err) {
				t.Fatal("a refused deployment wrote secrets.yaml")
			}
		})
	}
}
