package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Layer is one layer as Inspect reports it.
type Layer struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diff_id"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
	CreatedBy string `json:"created_by,omitempty"`
}

// Report is what Inspect found and checked.
type Report struct {
	Digest       string            `json:"digest"`
	ConfigDigest string            `json:"config_digest"`
	MediaType    string            `json:"media_type"`
	Platform     string            `json:"platform"`
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd,omitempty"`
	User         string            `json:"user"`
	Layers       []Layer           `json:"layers"`
	Annotations  map[string]string `json:"annotations"`
	Files        int               `json:"files"`
	TrustedFiles int               `json:"trusted_files,omitempty"`
	// Checks lists what was verified, one line each.
	Checks []string `json:"checks"`
}

// ErrMismatch: the image's contents disagree with its annotations or its
// Gramine manifest.
var ErrMismatch = errors.New("image does not match its measurements")

// maxFile bounds one file read from an image for hashing into memory.
const maxFile = 1 << 30

// Inspect reads img's layers, annotations and configuration and checks that
// the measurements agree with the flattened file system: the binary's and
// role files' digests, and every trusted file of the Gramine manifest.
func Inspect(img v1.Image) (*Report, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image: digest: %w", err)
	}
	// Every blob against its descriptor first: manifest, config, each
	// layer's compressed digest, size and diff ID. A store (an OCI layout
	// on disk, a tarball) is not trusted to have checked them.
	if err := verifyBlobs(img, d); err != nil {
		return nil, fmt.Errorf("image %s: blobs do not match their digests: %w", d, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("image: manifest: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	r := &Report{
		Digest: d.String(), ConfigDigest: m.Config.Digest.String(), MediaType: string(m.MediaType),
		Platform: cf.OS + "/" + cf.Architecture, Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd,
		User: cf.Config.User, Annotations: m.Annotations,
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image: layers: %w", err)
	}
	var hist []v1.History
	for _, h := range cf.History {
		if !h.EmptyLayer {
			hist = append(hist, h)
		}
	}
	for i, l := range ls {
		ld, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("image: layer %d: %w", i, err)
		}
		diff, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("image: layer %d: %w", i, err)
		}
		size, err := l.Size()
		if err != nil {
			return nil, fmt.Errorf("image: layer %d: %w", i, err)
		}
		mt, err := l.MediaType()
		if err != nil {
			return nil, fmt.Errorf("image: layer %d: %w", i, err)
		}
		li := Layer{Digest: ld.String(), DiffID: diff.String(), MediaType: string(mt), Size: size}
		if i < len(hist) {
			li.CreatedBy = hist[i].CreatedBy
		}
		r.Layers = append(r.Layers, li)
	}

	files, err := flatten(img)
	if err != nil {
		return nil, err
	}
	r.Files = len(files)
	if cf.Config.User == "" || cf.Config.User == "0" || strings.HasPrefix(cf.Config.User, "0:") || cf.Config.User == "root" {
		return r, fmt.Errorf("image %s: runs as root (config user %q): %w", r.Digest, cf.Config.User, ErrMismatch)
	}
	r.Checks = append(r.Checks, "runs as user "+cf.Config.User)
	ann := m.Annotations
	if want := ann[AnnotationBinarySHA256]; want != "" {
		got, ok := files[BinaryPath]
		if !ok {
			return r, fmt.Errorf("image %s: %s annotated but missing from the layers: %w", r.Digest, BinaryPath, ErrMismatch)
		}
		if got.sha256 != want {
			return r, fmt.Errorf("image %s: %s has SHA-256 %s, annotation %s says %s: %w", r.Digest, BinaryPath, got.sha256, AnnotationBinarySHA256, want, ErrMismatch)
		}
		r.Checks = append(r.Checks, "binary "+BinaryPath+" sha256 "+want)
	} else {
		return r, fmt.Errorf("image %s: no %s annotation: not built by teeml image build: %w", r.Digest, AnnotationBinarySHA256, ErrMismatch)
	}
	if want, ok := ann[AnnotationFilesSHA256]; ok {
		var role []entry
		for p := range files {
			if strings.HasPrefix(p, FilesDir+"/") && !strings.HasPrefix(p, GramineDir+"/") {
				role = append(role, entry{path: p})
			}
		}
		sort.Slice(role, func(i, j int) bool { return role[i].path < role[j].path })
		h := sha256.New()
		for _, e := range role {
			fmt.Fprintf(h, "%s\x00%s\n", e.path, files[e.path].sha256)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return r, fmt.Errorf("image %s: role files under %s digest to %s, annotation %s says %s: %w", r.Digest, FilesDir, got, AnnotationFilesSHA256, want, ErrMismatch)
		}
		r.Checks = append(r.Checks, fmt.Sprintf("%d role files under %s match %s", len(role), FilesDir, AnnotationFilesSHA256))
	}
	want, hasManifest := ann[AnnotationManifest]
	mf, inImage := files[ManifestPath]
	switch {
	case hasManifest && !inImage:
		return r, fmt.Errorf("image %s: %s annotated but missing from the layers: %w", r.Digest, ManifestPath, ErrMismatch)
	case !hasManifest && inImage:
		return r, fmt.Errorf("image %s: %s present but not annotated (%s): %w", r.Digest, ManifestPath, AnnotationManifest, ErrMismatch)
	case hasManifest:
		if mf.sha256 != want {
			return r, fmt.Errorf("image %s: %s has SHA-256 %s, annotation says %s: %w", r.Digest, ManifestPath, mf.sha256, want, ErrMismatch)
		}
		n, err := checkTrusted(mf.data, files)
		if err != nil {
			return r, fmt.Errorf("image %s: %s: %w", r.Digest, ManifestPath, err)
		}
		r.TrustedFiles = n
		r.Checks = append(r.Checks, fmt.Sprintf("Gramine manifest sha256 %s; all %d trusted files match the layers", want, n))
	}
	return r, nil
}

// fileInfo is one regular file of the flattened image.
type fileInfo struct {
	sha256 string
	data   []byte // kept only for the Gramine manifest
}

// flatten reads the image's merged file system (whiteouts applied).
func flatten(img v1.Image) (map[string]fileInfo, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]fileInfo{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("image: reading layers: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > maxFile {
			return nil, fmt.Errorf("image: %s: %d bytes, over the %d-byte limit for one file", hdr.Name, hdr.Size, maxFile)
		}
		p := path.Clean("/" + hdr.Name)
		h := sha256.New()
		var fi fileInfo
		if p == ManifestPath {
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return nil, fmt.Errorf("image: reading %s: %w", p, err)
			}
			h.Write(b)
			fi.data = b
		} else if _, err := io.Copy(h, tr); err != nil {
			return nil, fmt.Errorf("image: reading %s: %w", p, err)
		}
		fi.sha256 = hex.EncodeToString(h.Sum(nil))
		out[p] = fi
	}
}

// checkTrusted checks every sgx.trusted_files entry of a Gramine manifest
// against the image's files and returns how many there are.
func checkTrusted(manifest []byte, files map[string]fileInfo) (int, error) {
	var doc struct {
		SGX struct {
			TrustedFiles []struct {
				URI    string `toml:"uri"`
				SHA256 string `toml:"sha256"`
			} `toml:"trusted_files"`
		} `toml:"sgx"`
	}
	if err := toml.Unmarshal(manifest, &doc); err != nil {
		return 0, fmt.Errorf("not a TOML manifest: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if len(doc.SGX.TrustedFiles) == 0 {
		return 0, fmt.Errorf("no sgx.trusted_files: %w", ErrMismatch)
	}
	for _, tf := range doc.SGX.TrustedFiles {
		p, ok := strings.CutPrefix(tf.URI, "file:")
		if !ok || !strings.HasPrefix(p, "/") {
			return 0, fmt.Errorf("trusted file %q: not an absolute file: URI: %w", tf.URI, ErrMismatch)
		}
		f, ok := files[p]
		if !ok {
			return 0, fmt.Errorf("trusted file %s: not in the image: %w", p, ErrMismatch)
		}
		if f.sha256 != tf.SHA256 {
			return 0, fmt.Errorf("trusted file %s: layers hold SHA-256 %s, manifest says %s: %w", p, f.sha256, tf.SHA256, ErrMismatch)
		}
	}
	return len(doc.SGX.TrustedFiles), nil
}

// verifyBlobs recomputes the manifest's, the config's and every layer's
// digest (compressed and uncompressed) and size against their descriptors.
func verifyBlobs(img v1.Image, digest v1.Hash) error {
	raw, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if h := sha256Of(raw); h != digest.Hex || digest.Algorithm != "sha256" {
		return fmt.Errorf("manifest hashes to sha256:%s: %w", h, ErrMismatch)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	rc, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if h := sha256Of(rc); h != m.Config.Digest.Hex || int64(len(rc)) != m.Config.Size {
		return fmt.Errorf("config hashes to sha256:%s (%d bytes), manifest says %s (%d bytes): %w", h, len(rc), m.Config.Digest, m.Config.Size, ErrMismatch)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(rc))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("config lists %d diff IDs for %d layers: %w", len(cf.RootFS.DiffIDs), len(m.Layers), ErrMismatch)
	}
	for i, desc := range m.Layers {
		l, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		n, h, err := hashStream(l.Compressed)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if h != desc.Digest.Hex || n != desc.Size {
			return fmt.Errorf("layer %d hashes to sha256:%s (%d bytes), manifest says %s (%d bytes): %w", i, h, n, desc.Digest, desc.Size, ErrMismatch)
		}
		_, h, err = hashStream(l.Uncompressed)
		if err != nil {
			return fmt.Errorf("layer %d: uncompressing: %w", i, err)
		}
		if h != cf.RootFS.DiffIDs[i].Hex {
			return fmt.Errorf("layer %d uncompresses to sha256:%s, config's diff ID is %s: %w", i, h, cf.RootFS.DiffIDs[i], ErrMismatch)
		}
	}
	return nil
}

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func hashStream(open func() (io.ReadCloser, error)) (int64, string, error) {
	r, err := open()
	if err != nil {
		return 0, "", err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
