// Package image builds and inspects teeml's OCI images without a container
// daemon: the static teeml binary, CA certificates and the public files a
// role needs (plan, policies, federation bundle, templates), and for SGX the
// Gramine manifest with the SHA-256 of every trusted file in the image.
//
// Builds are reproducible: layers are tar streams with sorted entries, owner
// 0:0, one fixed modification time (SOURCE_DATE_EPOCH or the Unix epoch) and
// no host paths, so the same inputs give the same image digest. The
// measurements (binary and manifest digests, MRSIGNER, and MRENCLAVE when
// the manifest was signed with Gramine) are written as manifest annotations
// and checked again by Inspect against the layer contents.
//
// Secrets never enter an image: a file holding a PEM private key is refused;
// identities and keys reach a running party as Kubernetes Secrets.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/teeml/teeml/enclave"
)

// Paths inside every image.
const (
	BinaryPath   = "/usr/local/bin/teeml"
	CACertsPath  = "/etc/ssl/certs/ca-certificates.crt"
	FilesDir     = "/etc/teeml"
	GramineDir   = "/etc/teeml/gramine"
	ManifestPath = GramineDir + "/teeml.manifest"
	// User is the numeric user the party runs as (no root in the image).
	User = "65532:65532"
)

// Annotation keys written on the image manifest.
const (
	AnnotationCreated      = "org.opencontainers.image.created"
	AnnotationTitle        = "org.opencontainers.image.title"
	AnnotationRole         = "io.teeml.role"
	AnnotationBinarySHA256 = "io.teeml.binary.sha256"
	AnnotationFilesSHA256  = "io.teeml.files.sha256"
	AnnotationManifest     = "io.teeml.gramine.manifest.sha256"
	AnnotationMRSigner     = "io.teeml.sgx.mr_signer"
	AnnotationMREnclave    = "io.teeml.sgx.mr_enclave"
	AnnotationSimulation   = "io.teeml.simulation"
)

// File is one file to put under FilesDir: Src on the host, Dst relative to
// FilesDir (default: Src's base name). A directory is added recursively.
type File struct {
	Src, Dst string
}

// Gramine asks for an SGX image: a Gramine manifest whose trusted files are
// the image's binary, CA certificates and role files.
type Gramine struct {
	// Config is the manifest's settings; Entrypoint, TrustedFiles and Root
	// are set by the build. Argv must be given: arguments come from the
	// manifest, never from the host.
	Config enclave.ManifestConfig
	// SigningKey, if set, gives MRSIGNER (its private half never enters the
	// image).
	SigningKey *rsa.PublicKey
}

// Spec is everything an image is built from.
type Spec struct {
	Role    string // the party's role, e.g. aggregator, collaborator, kms, serving
	Binary  string // a statically linked linux/amd64 teeml binary
	CACerts string // CA bundle (PEM); "" for none
	Files   []File
	Gramine *Gramine
	// Base, if set, is the image the teeml layers go on (e.g. one with
	// Gramine installed); nil builds from scratch.
	Base v1.Image
	// Created is the one timestamp in the image (layers, config, history).
	Created time.Time
	// Cmd is the default arguments after the entrypoint (e.g. the role's
	// start command); a Gramine image takes its argv from the manifest.
	Cmd []string
}

// Result describes a built image.
type Result struct {
	Image        v1.Image
	Digest       v1.Hash
	Annotations  map[string]string
	Manifest     []byte // the Gramine manifest, if any
	TrustedFiles int
}

// ErrPrivateKey: a file to be put into an image holds a private key.
var ErrPrivateKey = errors.New("holds a private key; keys reach a party as Kubernetes Secrets, never inside an image")

// CreatedFromEnv returns SOURCE_DATE_EPOCH as a time, or the Unix epoch.
func CreatedFromEnv() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	var sec int64
	if _, err := fmt.Sscanf(v, "%d", &sec); err != nil || sec < 0 || fmt.Sprint(sec) != v {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: not a non-negative integer number of seconds", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// entry is one regular file of a layer.
type entry struct {
	path string // absolute path inside the image
	mode int64
	data []byte
}

// Build builds the image described by spec.
func Build(ctx context.Context, spec Spec) (*Result, error) {
	if spec.Role == "" {
		return nil, errors.New("image: role is required")
	}
	if !validName(spec.Role) {
		return nil, fmt.Errorf("image: role %q: want lower-case letters, digits and '-'", spec.Role)
	}
	created := spec.Created.UTC().Truncate(time.Second)
	bin, err := os.ReadFile(spec.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: binary: %w", err)
	}
	if err := CheckStatic(spec.Binary, bin); err != nil {
		return nil, err
	}
	base := []entry{{path: BinaryPath, mode: 0o755, data: bin}}
	if spec.CACerts != "" {
		ca, err := os.ReadFile(spec.CACerts)
		if err != nil {
			return nil, fmt.Errorf("image: CA certificates: %w", err)
		}
		if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("image: CA certificates %s: no PEM certificate in it", spec.CACerts)
		}
		base = append(base, entry{path: CACertsPath, mode: 0o644, data: ca})
	}
	base = append(base,
		entry{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nteeml:x:65532:65532:teeml:/home/teeml:/sbin/nologin\n")},
		entry{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nteeml:x:65532:\n")},
	)
	files, err := collectFiles(spec.Files)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	ann := map[string]string{
		AnnotationCreated:      created.Format(time.RFC3339),
		AnnotationTitle:        "teeml " + spec.Role,
		AnnotationRole:         spec.Role,
		AnnotationBinarySHA256: sha256Hex(bin),
		AnnotationFilesSHA256:  filesDigest(files),
	}
	layers := []layerSpec{{entries: base, createdBy: "teeml image build: binary and CA certificates"}}
	if len(files) > 0 {
		layers = append(layers, layerSpec{entries: files, createdBy: "teeml image build: " + spec.Role + " files"})
	}
	res := &Result{Annotations: ann}
	entrypoint := []string{BinaryPath}
	cmd := spec.Cmd
	if g := spec.Gramine; g != nil {
		m, n, err := gramineManifest(g, append(slices.Clone(base), files...))
		if err != nil {
			return nil, err
		}
		res.Manifest, res.TrustedFiles = m, n
		layers = append(layers, layerSpec{entries: []entry{{path: ManifestPath, mode: 0o644, data: m}},
			createdBy: "teeml image build: Gramine manifest"})
		ann[AnnotationManifest] = sha256Hex(m)
		if g.SigningKey != nil {
			mr := enclave.MRSigner(g.SigningKey)
			ann[AnnotationMRSigner] = hex.EncodeToString(mr[:])
		}
		entrypoint = []string{"gramine-sgx", strings.TrimSuffix(ManifestPath, ".manifest")}
		cmd = nil
	}

	img := spec.Base
	if img == nil {
		img = empty.Image
	}
	for _, ls := range layers {
		l, err := ls.layer(created)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: ls.createdBy},
		})
		if err != nil {
			return nil, fmt.Errorf("image: appending layer: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: base config: %w", err)
	}
	cf = cf.DeepCopy()
	if spec.Base != nil && (cf.OS != "linux" || cf.Architecture != "amd64") {
		return nil, fmt.Errorf("image: base image is %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: created}
	cf.Author = "teeml image build"
	cf.Config.Entrypoint = entrypoint
	cf.Config.Cmd = cmd
	cf.Config.User = User
	cf.Config.WorkingDir = FilesDir
	cf.Config.Env = mergeEnv(cf.Config.Env, "SSL_CERT_FILE="+CACertsPath, "TEEML_ROLE="+spec.Role)
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range ann {
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img = mutate.Annotations(img, ann).(v1.Image)
	if res.Digest, err = img.Digest(); err != nil {
		return nil, fmt.Errorf("image: digest: %w", err)
	}
	res.Image = img
	return res, nil
}

// CheckStatic refuses a binary that is not a statically linked
// linux/amd64 ELF executable (an image from scratch has no dynamic loader).
func CheckStatic(name string, b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("image: binary %s: not an ELF executable: %w", name, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("image: binary %s: built for %s, want linux/amd64", name, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			libs, _ := f.ImportedLibraries()
			return fmt.Errorf("image: binary %s: dynamically linked (needs %s); build it static: "+
				"go build -tags netgo,osusergo -ldflags '-s -w -linkmode external -extldflags \"-static\"' ./cmd/teeml",
				name, strings.Join(libs, ", "))
		}
	}
	return nil
}

// collectFiles reads spec files into entries under FilesDir, sorted,
// refusing duplicates, escapes and private keys.
func collectFiles(files []File) ([]entry, error) {
	var out []entry
	seen := map[string]string{}
	add := func(src, dst string) error {
		dst = filepath.ToSlash(dst)
		if slices.Contains(strings.Split(dst, "/"), "..") || strings.HasPrefix(dst, "/") {
			return fmt.Errorf("image: file %s: destination %q is not a path below %s", src, dst, FilesDir)
		}
		dst = path.Clean("/" + dst)
		if dst == "/" {
			return fmt.Errorf("image: file %s: destination %q is not a path below %s", src, dst, FilesDir)
		}
		full := FilesDir + dst
		if !validPath(full) {
			return fmt.Errorf("image: file %s: destination %q holds characters outside [A-Za-z0-9._+@=/-]", src, dst)
		}
		if prev, ok := seen[full]; ok {
			return fmt.Errorf("image: file %s: destination %s already taken by %s", src, full, prev)
		}
		seen[full] = src
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("image: file: %w", err)
		}
		if bytes.Contains(b, []byte("PRIVATE KEY-----")) {
			return fmt.Errorf("image: file %s %w", src, ErrPrivateKey)
		}
		out = append(out, entry{path: full, mode: 0o644, data: b})
		return nil
	}
	for _, f := range files {
		if f.Src == "" {
			return nil, errors.New("image: file: empty source path")
		}
		fi, err := os.Stat(f.Src)
		if err != nil {
			return nil, fmt.Errorf("image: file: %w", err)
		}
		dst := f.Dst
		if dst == "" {
			dst = filepath.Base(filepath.Clean(f.Src))
		}
		if !fi.IsDir() {
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("image: file %s: not a regular file or directory", f.Src)
			}
			if err := add(f.Src, dst); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(f.Src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("image: file: %w", err)
			}
			if d.IsDir() {
				return nil
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("image: file %s: not a regular file (symbolic links and devices are not copied)", p)
			}
			rel, err := filepath.Rel(f.Src, p)
			if err != nil {
				return fmt.Errorf("image: file %s: %w", p, err)
			}
			return add(p, path.Join(dst, filepath.ToSlash(rel)))
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// gramineManifest writes the role's entries into a temporary root and
// generates the manifest there, so trusted files are hashed exactly as they
// appear in the image and named by their image paths.
func gramineManifest(g *Gramine, entries []entry) ([]byte, int, error) {
	if len(g.Config.Argv) == 0 && g.Config.ArgvSrcFile == "" {
		return nil, 0, errors.New("image: gramine: argv is required (the enclave's arguments come from the manifest, never from the host)")
	}
	root, err := os.MkdirTemp("", "teeml-image-root-")
	if err != nil {
		return nil, 0, fmt.Errorf("image: gramine: %w", err)
	}
	defer os.RemoveAll(root)
	cfg := g.Config
	cfg.Root = root
	cfg.Entrypoint = BinaryPath
	if len(cfg.Argv) > 0 && cfg.Argv[0] != BinaryPath {
		cfg.Argv = append([]string{BinaryPath}, cfg.Argv...)
	}
	cfg.TrustedFiles = nil
	if len(cfg.Mounts) == 0 {
		// The image's own directories, as the container sees them.
		for _, d := range []string{"/usr/local/bin", FilesDir, "/etc/ssl/certs"} {
			cfg.Mounts = append(cfg.Mounts, enclave.Mount{Path: d, URI: "file:" + d, Type: "chroot"})
		}
	}
	for _, e := range entries {
		if e.path == "/etc/passwd" || e.path == "/etc/group" {
			continue // read by nothing inside the enclave
		}
		p := filepath.Join(root, filepath.FromSlash(e.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, 0, fmt.Errorf("image: gramine: %w", err)
		}
		if err := os.WriteFile(p, e.data, 0o600); err != nil {
			return nil, 0, fmt.Errorf("image: gramine: %w", err)
		}
		if strings.HasPrefix(e.path, FilesDir+"/") {
			cfg.TrustConfig = append(cfg.TrustConfig, e.path)
		} else {
			cfg.TrustedFiles = append(cfg.TrustedFiles, e.path)
		}
	}
	var buf bytes.Buffer
	if err := enclave.WriteManifest(&buf, cfg); err != nil {
		return nil, 0, fmt.Errorf("image: %w", err)
	}
	return buf.Bytes(), len(cfg.TrustedFiles) + len(cfg.TrustConfig), nil
}

// layerSpec is one layer to build.
type layerSpec struct {
	entries   []entry
	createdBy string
}

// layer writes the entries as a deterministic tar stream (parent
// directories first, sorted, owner 0:0, one modification time).
func (ls layerSpec) layer(created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var names []string
	for _, e := range ls.entries {
		for d := path.Dir(e.path); d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		names = append(names, d+"/")
	}
	files := map[string]entry{}
	for _, e := range ls.entries {
		names = append(names, e.path)
		files[e.path] = e
	}
	sort.Strings(names)
	for _, n := range names {
		hdr := &tar.Header{Name: strings.TrimPrefix(n, "/"), ModTime: created, Uname: "", Gname: "", Format: tar.FormatPAX}
		if strings.HasSuffix(n, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			e := files[n]
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, e.mode, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(files[n].data); err != nil {
				return nil, fmt.Errorf("image: layer: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return l, nil
}

// filesDigest is SHA-256 over "path\x00sha256\n" of every role file.
func filesDigest(files []entry) string {
	h := sha256.New()
	for _, e := range files {
		fmt.Fprintf(h, "%s\x00%s\n", e.path, sha256Hex(e.data))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mergeEnv(env []string, add ...string) []string {
	out := slices.Clone(env)
	for _, a := range add {
		k := a[:strings.IndexByte(a, '=')+1]
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, k) })
		out = append(out, a)
	}
	if !slices.ContainsFunc(out, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		out = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, out...)
	}
	return out
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validPath(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+@=/-", r)) {
			return false
		}
	}
	return true
}
