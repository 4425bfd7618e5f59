package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type imageReport struct {
	Digest       string            `json:"digest"`
	ConfigDigest string            `json:"config_digest"`
	Annotations  map[string]string `json:"annotations"`
	TrustedFiles int               `json:"trusted_files"`
	Layers       []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
}

func TestImageBuildInspectCLI(t *testing.T) {
	bin := buildStaticTeeml(t)
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	os.MkdirAll(filepath.Join(ws, "policies"), 0o755)
	os.WriteFile(filepath.Join(ws, "plan.yaml"), []byte("rounds: 3\n"), 0o644)
	os.WriteFile(filepath.Join(ws, "policies", "collaborator.yaml"), []byte("roles: {}\n"), 0o644)
	gcfg := filepath.Join(dir, "gramine.yaml")
	os.WriteFile(gcfg, []byte("argv: [fl, collaborator, -w, /etc/teeml/ws]\nenclave_size: 4G\n"), 0o644)
	key := filepath.Join(dir, "enclave-key.pem")
	if _, stderr, code := run(t, bin, "enclave", "keygen", "-o", key); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	mrsigner, _, _ := run(t, bin, "enclave", "mrsigner", "--key", key)

	build := func(out string) imageReport {
		t.Helper()
		stdout, stderr, code := run(t, bin, "image", "build", "--role", "collaborator", "--file", ws+"=ws",
			"--ca-certs", "", "--gramine-config", gcfg, "--enclave-key", key, "--out", out, "--tag", "teeml/collaborator:1", "--json")
		if code != 0 {
			t.Fatalf("image build: exit %d: %s", code, stderr)
		}
		var r imageReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("image build --json: %v\n%s", err, stdout)
		}
		return r
	}
	a := build(filepath.Join(dir, "a"))
	b := build(filepath.Join(dir, "b"))
	if a.Digest == "" || a.Digest != b.Digest {
		t.Fatalf("two builds: %q and %q", a.Digest, b.Digest)
	}
	if a.Annotations["io.teeml.sgx.mr_signer"] != strings.TrimSpace(mrsigner) || a.TrustedFiles != 3 {
		t.Fatalf("mr_signer annotation %q, teeml enclave mrsigner %q; %d trusted files", a.Annotations["io.teeml.sgx.mr_signer"], mrsigner, a.TrustedFiles)
	}
	stdout, stderr, code := run(t, bin, "image", "inspect", filepath.Join(dir, "a"))
	if code != 0 || !strings.Contains(stdout, "digest: "+a.Digest) || !strings.Contains(stdout, "all 3 trusted files match") {
		t.Fatalf("inspect: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// A flipped byte in the role files' layer blob is refused, not reported.
	blob := filepath.Join(dir, "a", "blobs", "sha256", strings.TrimPrefix(a.Layers[1].Digest, "sha256:"))
	raw, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x40
	if err := os.WriteFile(blob, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = run(t, bin, "image", "inspect", "--json", filepath.Join(dir, "a"))
	if code == 0 || !strings.Contains(stderr, "blobs do not match their digests") {
		t.Fatalf("inspect of a tampered layer: exit %d, stderr %q", code, stderr)
	}
	// So is an edited configuration (a label changed, JSON still valid).
	cfgBlob := filepath.Join(dir, "b", "blobs", "sha256", strings.TrimPrefix(b.ConfigDigest, "sha256:"))
	raw, err = os.ReadFile(cfgBlob)
	if err != nil {
		t.Fatal(err)
	}
	raw = []byte(strings.Replace(string(raw), `"io.teeml.role":"collaborator"`, `"io.teeml.role":"aggregator!!"`, 1))
	if err := os.WriteFile(cfgBlob, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = run(t, bin, "image", "inspect", filepath.Join(dir, "b"))
	if code == 0 || !strings.Contains(stderr, "blobs do not match their digests") || strings.Contains(strings.TrimSpace(stderr), "\n") {
		t.Fatalf("inspect of an edited config: exit %d, stderr %q", code, stderr)
	}

	// Refusals: one line, non-zero exit, nothing written.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--binary", "/bin/sh", "--out", filepath.Join(dir, "c")}, "dynamically linked"},
		{[]string{"--out", filepath.Join(dir, "a")}, "already exists"},
		{[]string{}, "give --out"},
		{[]string{"--enclave-key", key, "--out", filepath.Join(dir, "d")}, "needs --gramine-config"},
	} {
		args := append([]string{"image", "build", "--role", "collaborator", "--ca-certs", ""}, tc.args...)
		_, stderr, code := run(t, bin, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Fatalf("%v: exit %d, stderr %q, want one line with %q", tc.args, code, stderr, tc.want)
		}
	}
	for _, p := range []string{"c", "d"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Fatalf("refused build left %s behind", p)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 5 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("temporary files left in %s: %v", dir, names)
	}
}
