package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/teeml/teeml/enclave"
	"github.com/teeml/teeml/image"
	"github.com/teeml/teeml/internal/testbin"
)

// teemlStatic is the static teeml binary, exactly as docs/deploy.md tells
// users to build it.
func teemlStatic(t *testing.T) string { return testbin.Static(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// roleFiles writes a small role directory: a plan, a policy and a CA
// bundle (public material only).
func roleFiles(t *testing.T) (dir, ca string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ws/plan.yaml", "rounds: 5\n")
	write("ws/policies/aggregator.yaml", "roles: {}\n")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return filepath.Join(dir, "ws"), filepath.Join(dir, "ca.pem")
}

func spec(t *testing.T, ws, ca string) image.Spec {
	return image.Spec{Role: "aggregator", Binary: teemlStatic(t), CACerts: ca,
		Files:   []image.File{{Src: ws, Dst: "ws"}},
		Created: time.Unix(1_700_000_000, 0), Cmd: []string{"fl", "aggregator", "-w", "/etc/teeml/ws"}}
}

func TestTwoBuildsSameDigest(t *testing.T) {
	ws, ca := roleFiles(t)
	a, err := image.Build(context.Background(), spec(t, ws, ca))
	if err != nil {
		t.Fatal(err)
	}
	b, err := image.Build(context.Background(), spec(t, ws, ca))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatalf("two builds from the same inputs: %s and %s", a.Digest, b.Digest)
	}
	// Written out, loaded back: still the same image.
	dir := t.TempDir()
	for i, p := range []string{filepath.Join(dir, "one"), filepath.Join(dir, "two")} {
		if err := image.WriteLayout(p, "teeml:test", a.Image); err != nil {
			t.Fatal(err)
		}
		img, err := image.Load(context.Background(), p, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := img.Digest(); d != a.Digest {
			t.Fatalf("layout %d reads back as %s, built %s", i, d, a.Digest)
		}
	}
	one, _ := os.ReadFile(filepath.Join(dir, "one", "index.json"))
	two, _ := os.ReadFile(filepath.Join(dir, "two", "index.json"))
	if !bytes.Equal(one, two) || !bytes.Contains(one, []byte(a.Digest.String())) {
		t.Fatalf("index.json differs between two writes or lacks the digest:\n%s\n%s", one, two)
	}
	if err := image.WriteLayout(filepath.Join(dir, "one"), "", a.Image); err == nil {
		t.Fatal("writing over an existing layout succeeded")
	}
	tb := filepath.Join(dir, "img.tar")
	if err := image.WriteTarball(tb, "teeml/aggregator:test", a.Image); err != nil {
		t.Fatal(err)
	}
	img, err := image.Load(context.Background(), tb, false, false)
	if err != nil {
		t.Fatal(err)
	}
	// docker save keeps layers and config; the manifest (and so its
	// annotations) is rebuilt by the reader, so compare the config.
	c1, _ := a.Image.ConfigName()
	c2, _ := img.ConfigName()
	if c1 != c2 {
		t.Fatalf("tarball config %s, built %s", c2, c1)
	}

	// Any input change shows in the digest.
	if err := os.WriteFile(filepath.Join(ws, "plan.yaml"), []byte("rounds: 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := image.Build(context.Background(), spec(t, ws, ca))
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest == a.Digest {
		t.Fatal("changing plan.yaml did not change the digest")
	}
	s := spec(t, ws, ca)
	s.Created = s.Created.Add(time.Second)
	d, err := image.Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if d.Digest == c.Digest {
		t.Fatal("changing the timestamp did not change the digest")
	}
}

func TestLayersAndConfig(t *testing.T) {
	ws, ca := roleFiles(t)
	s := spec(t, ws, ca)
	res, err := image.Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := res.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Fatalf("media types %s / %s", m.MediaType, m.Config.MediaType)
	}
	cf, err := res.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || cf.Config.User != image.User ||
		strings.Join(cf.Config.Entrypoint, " ") != image.BinaryPath || strings.Join(cf.Config.Cmd, " ") != "fl aggregator -w /etc/teeml/ws" {
		t.Fatalf("config: %s/%s user %q entrypoint %q cmd %q", cf.OS, cf.Architecture, cf.Config.User, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if !cf.Created.Time.Equal(s.Created) {
		t.Fatalf("config created %s, want %s", cf.Created, s.Created)
	}
	bin, _ := os.ReadFile(s.Binary)
	if got := res.Annotations[image.AnnotationBinarySHA256]; got != sha(bin) || m.Annotations[image.AnnotationBinarySHA256] != got {
		t.Fatalf("binary annotation %q, manifest %q, want %s", got, m.Annotations[image.AnnotationBinarySHA256], sha(bin))
	}
	layers, err := res.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want binary + role files", len(layers))
	}
	var all []string
	for i, l := range layers {
		mt, _ := l.MediaType()
		if mt != types.OCILayer {
			t.Fatalf("layer %d media type %s", i, mt)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(filepath.Dir(ws))) || bytes.Contains(raw, []byte(os.TempDir()+"/")) {
			t.Fatalf("layer %d contains a host path", i)
		}
		tr := tar.NewReader(bytes.NewReader(raw))
		var prev string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name <= prev {
				t.Fatalf("layer %d: %q after %q: entries not sorted", i, h.Name, prev)
			}
			prev = h.Name
			if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(s.Created) {
				t.Fatalf("layer %d: %s owner %d:%d mtime %s", i, h.Name, h.Uid, h.Gid, h.ModTime)
			}
			all = append(all, h.Name)
		}
	}
	want := []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
		"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/teeml",
		"etc/", "etc/teeml/", "etc/teeml/ws/", "etc/teeml/ws/plan.yaml", "etc/teeml/ws/policies/", "etc/teeml/ws/policies/aggregator.yaml"}
	if strings.Join(all, " ") != strings.Join(want, " ") {
		t.Fatalf("layer entries\n got %q\nwant %q", all, want)
	}
	rep, err := image.Inspect(res.Image)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Digest != res.Digest.String() || len(rep.Layers) != 2 || rep.Layers[1].CreatedBy != "teeml image build: aggregator files" {
		t.Fatalf("inspect report %+v", rep)
	}
}

// TestVersionFromRootFS runs teeml from the image's extracted root file
// system (no kubelet or container runtime exists here).
func TestVersionFromRootFS(t *testing.T) {
	ws, ca := roleFiles(t)
	res, err := image.Build(context.Background(), spec(t, ws, ca))
	if err != nil {
		t.Fatal(err)
	}
	root := extract(t, res.Image)
	out, err := exec.Command(filepath.Join(root, "usr/local/bin/teeml"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("teeml version from the image: %v: %s", err, out)
	}
	if !strings.HasPrefix(string(out), "teeml ") || !strings.Contains(string(out), "platform: linux/amd64") {
		t.Fatalf("teeml version printed %q", out)
	}
	plan, err := os.ReadFile(filepath.Join(root, "etc/teeml/ws/plan.yaml"))
	if err != nil || string(plan) != "rounds: 5\n" {
		t.Fatalf("plan in the image: %q, %v", plan, err)
	}
}

// TestGramineManifestEqualsEnclaveManifest: the manifest in the image is
// byte for byte what `teeml enclave manifest` writes for the same files
// (there: the extracted root), and MRSIGNER is the key's.
func TestGramineManifestEqualsEnclaveManifest(t *testing.T) {
	ws, ca := roleFiles(t)
	key, err := enclave.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := spec(t, ws, ca)
	s.Gramine = &image.Gramine{SigningKey: &key.PublicKey,
		Config: enclave.ManifestConfig{Argv: []string{"fl", "aggregator", "-w", "/etc/teeml/ws"}, EnclaveSize: "4G", MaxThreads: 16}}
	res, err := image.Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	mr := enclave.MRSigner(&key.PublicKey)
	if got := res.Annotations[image.AnnotationMRSigner]; got != hexs(mr[:]) {
		t.Fatalf("mr_signer annotation %s, key's %x", got, mr)
	}
	if res.Annotations[image.AnnotationManifest] != sha(res.Manifest) || res.TrustedFiles != 4 {
		t.Fatalf("manifest annotation %s (manifest %s), %d trusted files", res.Annotations[image.AnnotationManifest], sha(res.Manifest), res.TrustedFiles)
	}
	root := extract(t, res.Image)
	var buf bytes.Buffer
	err = enclave.WriteManifest(&buf, enclave.ManifestConfig{Root: root, Entrypoint: image.BinaryPath,
		Argv:        []string{image.BinaryPath, "fl", "aggregator", "-w", "/etc/teeml/ws"},
		EnclaveSize: "4G", MaxThreads: 16,
		Mounts:       []enclave.Mount{{Path: "/usr/local/bin", URI: "file:/usr/local/bin", Type: "chroot"}, {Path: "/etc/teeml", URI: "file:/etc/teeml", Type: "chroot"}, {Path: "/etc/ssl/certs", URI: "file:/etc/ssl/certs", Type: "chroot"}},
		TrustedFiles: []string{image.BinaryPath, image.CACertsPath},
		TrustConfig:  []string{"/etc/teeml/ws"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), res.Manifest) {
		t.Fatalf("image manifest differs from enclave.WriteManifest on the extracted root:\n%s\n---\n%s", res.Manifest, buf.Bytes())
	}
	if bytes.Contains(res.Manifest, []byte(os.TempDir()+"/")) {
		t.Fatalf("manifest names a host path:\n%s", res.Manifest)
	}
	rep, err := image.Inspect(res.Image)
	if err != nil {
		t.Fatal(err)
	}
	if rep.TrustedFiles != 4 || strings.Join(rep.Entrypoint, " ") != "gramine-sgx /etc/teeml/gramine/teeml" {
		t.Fatalf("inspect: %d trusted files, entrypoint %q", rep.TrustedFiles, rep.Entrypoint)
	}
}

// TestInspectRefusesTamper: a layer changed after the build (binary or a
// trusted role file) is caught against the annotations and the manifest.
func TestInspectRefusesTamper(t *testing.T) {
	ws, ca := roleFiles(t)
	s := spec(t, ws, ca)
	s.Gramine = &image.Gramine{Config: enclave.ManifestConfig{Argv: []string{"version"}}}
	res, err := image.Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	bin, _ := os.ReadFile(s.Binary)
	patched := append(bytes.Clone(bin), 0)
	img := mutateAppendFile(t, res.Image, "usr/local/bin/teeml", patched)
	if _, err := image.Inspect(img); !errors.Is(err, image.ErrMismatch) || !strings.Contains(err.Error(), "/usr/local/bin/teeml has SHA-256") {
		t.Fatalf("patched binary: %v", err)
	}
	img = mutateAppendFile(t, res.Image, "etc/teeml/ws/plan.yaml", []byte("rounds: 500\n"))
	if _, err := image.Inspect(img); !errors.Is(err, image.ErrMismatch) || !strings.Contains(err.Error(), "role files under /etc/teeml") {
		t.Fatalf("patched plan: %v", err)
	}
	// A whiteout deletes a trusted policy from the merged file system.
	img = mutateAppendFile(t, res.Image, "etc/teeml/ws/policies/.wh.aggregator.yaml", nil)
	if _, err := image.Inspect(img); !errors.Is(err, image.ErrMismatch) || !strings.Contains(err.Error(), "role files") {
		t.Fatalf("deleted policy: %v", err)
	}
	// The manifest's own hash list is checked too: same role files
	// annotation, one trusted file changed only in the manifest.
	img = mutateAppendFile(t, res.Image, "etc/teeml/gramine/teeml.manifest",
		bytes.Replace(res.Manifest, []byte(res.Annotations[image.AnnotationBinarySHA256]), []byte(strings.Repeat("0", 64)), 1))
	if _, err := image.Inspect(img); !errors.Is(err, image.ErrMismatch) || !strings.Contains(err.Error(), "teeml.manifest has SHA-256") {
		t.Fatalf("edited manifest: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	ws, ca := roleFiles(t)
	for _, tc := range []struct {
		name string
		mod  func(*image.Spec)
		want string
	}{
		{"dynamic binary", func(s *image.Spec) { s.Binary = "/bin/sh" }, "dynamically linked"},
		{"not ELF", func(s *image.Spec) { s.Binary = filepath.Join(ws, "plan.yaml") }, "not an ELF executable"},
		{"no role", func(s *image.Spec) { s.Role = "" }, "role is required"},
		{"bad role", func(s *image.Spec) { s.Role = "Agg regator" }, "want lower-case"},
		{"missing file", func(s *image.Spec) { s.Files = append(s.Files, image.File{Src: filepath.Join(ws, "nope")}) }, "no such file"},
		{"escape", func(s *image.Spec) {
			s.Files = []image.File{{Src: filepath.Join(ws, "plan.yaml"), Dst: "../../etc/passwd"}}
		}, "not a path below"},
		{"twice", func(s *image.Spec) {
			s.Files = []image.File{{Src: filepath.Join(ws, "plan.yaml")}, {Src: filepath.Join(ws, "plan.yaml")}}
		}, "already taken"},
		{"bad CA", func(s *image.Spec) { s.CACerts = filepath.Join(ws, "plan.yaml") }, "no PEM certificate"},
		{"gramine without argv", func(s *image.Spec) { s.Gramine = &image.Gramine{} }, "argv is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(t, ws, ca)
			tc.mod(&s)
			_, err := image.Build(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.want)
			}
		})
	}
	t.Run("private key", func(t *testing.T) {
		p := filepath.Join(ws, "identity-key.pem")
		os.WriteFile(p, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600)
		defer os.Remove(p)
		_, err := image.Build(context.Background(), spec(t, ws, ca))
		if !errors.Is(err, image.ErrPrivateKey) || !strings.Contains(err.Error(), "identity-key.pem") {
			t.Fatalf("private key in the workspace: %v", err)
		}
	})
}

func TestSourceDateEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if c, err := image.CreatedFromEnv(); err != nil || c.Unix() != 1_700_000_000 {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{"-1", "1e9", "x", " 1"} {
		t.Setenv("SOURCE_DATE_EPOCH", bad)
		if _, err := image.CreatedFromEnv(); err == nil {
			t.Fatalf("SOURCE_DATE_EPOCH=%q accepted", bad)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if c, err := image.CreatedFromEnv(); err != nil || c.Unix() != 0 {
		t.Fatalf("%v %v", c, err)
	}
}

// TestPushToRegistry pushes to a registry on loopback (go-containerregistry's
// registry implementation) and pulls the same digest back.
func TestPushToRegistry(t *testing.T) {
	ws, ca := roleFiles(t)
	res, err := image.Build(context.Background(), spec(t, ws, ca))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(discardLogger())))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/teeml/aggregator:test"
	if err := image.Push(context.Background(), ref, res.Image, time.Minute, true); err != nil {
		t.Fatal(err)
	}
	img, err := image.Load(context.Background(), ref, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d != res.Digest {
		t.Fatalf("pulled %s, pushed %s", d, res.Digest)
	}
	if _, err := image.Inspect(img); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := image.Push(ctx, ref, res.Image, time.Minute, true); err == nil {
		t.Fatal("push with a cancelled context succeeded")
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

// extract writes the image's merged file system into a new directory.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
}

// mutateAppendFile adds a layer holding one file on top of img and keeps
// img's annotations, as someone with write access to a registry could.
func mutateAppendFile(t *testing.T, img v1.Image, name string, body []byte) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	out, err := mutate.AppendLayers(img, l)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	return mutate.Annotations(out, m.Annotations).(v1.Image)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
