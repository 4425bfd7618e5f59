package deploy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/internal/atomicfile"
)

// Federation is what a cluster deployment is made from: a workspace's
// parties (the caller reads them from plan/cols.yaml and the plan) and the
// image and platform to run them on.
type Federation struct {
	Workspace      string
	Aggregator     string
	AggregatorPort int
	Collaborators  []string
	// Image is REPOSITORY@sha256:HEX (preferred) or REPOSITORY:TAG.
	Image string
	// Platform is sgx, tdx or snp; RuntimeClass is required for tdx and snp.
	Platform, RuntimeClass string
}

// ErrSimulated: a party of the workspace uses simulated attestation, which
// proves nothing and has no place in a cluster.
var ErrSimulated = errors.New("uses simulated attestation (platform: sim), which proves nothing; a cluster runs parties in real TEEs")

// SecretName is the Secret holding party name's identity.
func SecretName(name string) string { return "teeml-" + name + "-identity" }

// Values returns the chart values for f (checked by rendering the chart).
func Values(f Federation) (map[string]any, error) {
	img := map[string]any{"pullPolicy": "IfNotPresent"}
	if repo, dig, ok := strings.Cut(f.Image, "@"); ok {
		img["repository"], img["digest"] = repo, dig
	} else if i := strings.LastIndex(f.Image, ":"); i > 0 && !strings.Contains(f.Image[i:], "/") {
		img["repository"], img["tag"] = f.Image[:i], f.Image[i+1:]
	} else {
		return nil, fmt.Errorf("deploy: image %q: want REPOSITORY@sha256:DIGEST or REPOSITORY:TAG", f.Image)
	}
	platform := map[string]any{"kind": f.Platform}
	if f.RuntimeClass != "" {
		platform["runtimeClassName"] = f.RuntimeClass
	}
	var cols []any
	for _, c := range f.Collaborators {
		cols = append(cols, map[string]any{"name": c, "identitySecret": SecretName(c)})
	}
	v := map[string]any{
		"image":         img,
		"platform":      platform,
		"aggregator":    map[string]any{"name": f.Aggregator, "port": f.AggregatorPort, "identitySecret": SecretName(f.Aggregator)},
		"collaborators": cols,
	}
	if _, err := Render(v, "teeml", "default"); err != nil {
		return nil, err
	}
	return v, nil
}

// Secrets returns one Secret per party (identity certificate, identity
// key, party configuration) as a YAML stream for kubectl apply.
func Secrets(f Federation, namespace string) ([]byte, error) {
	var buf bytes.Buffer
	for i, name := range append([]string{f.Aggregator}, f.Collaborators...) {
		files := [][2]string{
			{"party.yaml", filepath.Join(f.Workspace, "party", name+".yaml")},
			{"identity.crt", filepath.Join(f.Workspace, "pki", name+".crt")},
			{"identity-key.pem", filepath.Join(f.Workspace, "pki", name+"-key.pem")},
		}
		data := map[string]string{}
		for _, kp := range files {
			key, p := kp[0], kp[1]
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("deploy: party %s: %w", name, err)
			}
			if key == "party.yaml" {
				var pc struct {
					Platform string `yaml:"platform"`
				}
				if err := yaml.Unmarshal(b, &pc); err != nil {
					return nil, fmt.Errorf("deploy: party %s: %s: %w", name, p, err)
				}
				if pc.Platform == "" || pc.Platform == "sim" {
					return nil, fmt.Errorf("deploy: party %s (%s) %w", name, p, ErrSimulated)
				}
			}
			data[key] = base64.StdEncoding.EncodeToString(b)
		}
		doc := map[string]any{
			"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
			"metadata": map[string]any{"name": SecretName(name), "namespace": namespace,
				"labels": map[string]any{"app.kubernetes.io/name": "teeml", "teeml.io/party": name}},
			"data": data,
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("deploy: secret %s: %w", SecretName(name), err)
		}
		enc.Close()
	}
	return buf.Bytes(), nil
}

// WriteK8s writes values.yaml (mode 0644, nothing secret) and secrets.yaml
// (mode 0600) for f into dir, each through a temporary file and a rename.
func WriteK8s(dir string, f Federation, namespace string) error {
	v, err := Values(f)
	if err != nil {
		return err
	}
	sec, err := Secrets(f, namespace)
	if err != nil {
		return err
	}
	vy, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("deploy: values: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	header := "# teeml chart values from workspace " + filepath.Base(filepath.Clean(f.Workspace)) + " (teeml deploy k8s); nothing secret.\n"
	if err := atomicfile.WriteBytes(filepath.Join(dir, "secrets.yaml"), sec, 0o600); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, "values.yaml"), append([]byte(header), vy...), 0o644); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	return nil
}
