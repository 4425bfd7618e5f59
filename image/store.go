package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// refNameAnnotation names an image inside an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes img as the only image of a new OCI image layout
// directory at dir, tagged tag. The directory must not exist; it is built
// beside dir and renamed into place, so a failed write leaves nothing.
func WriteLayout(dir, tag string, img v1.Image) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("image: OCI layout %s: already exists", dir)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{refNameAnnotation: tag}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	if err := syncTree(tmp); err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes img as a `docker save` tarball (loadable by docker,
// podman, kind and ctr) to path, through a temporary file and a rename.
func WriteTarball(path, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("image: tarball %s: reference %q: %w", path, ref, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("image: tarball %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := tarball.Write(r, img, f); err != nil {
		f.Close()
		return fmt.Errorf("image: tarball %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("image: tarball %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image: tarball %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("image: tarball %s: %w", path, err)
	}
	return nil
}

// Push uploads img to a registry as ref with the credentials of the
// default keychain (docker config), within timeout.
func Push(ctx context.Context, ref string, img v1.Image, timeout time.Duration, insecure bool) error {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return fmt.Errorf("image: push: reference %q: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("image: push %s: %w", ref, err)
	}
	return nil
}

// Load reads the image at path: an OCI layout directory holding exactly one
// image, a `docker save` tarball, or (with fromRegistry) a registry
// reference. A registry image's blobs are fetched lazily under ctx, so ctx
// (with its deadline) must outlive the use of the image.
func Load(ctx context.Context, path string, fromRegistry, insecure bool) (v1.Image, error) {
	if fromRegistry {
		var nopts []name.Option
		if insecure {
			nopts = append(nopts, name.Insecure)
		}
		r, err := name.ParseReference(path, nopts...)
		if err != nil {
			return nil, fmt.Errorf("image: reference %q: %w", path, err)
		}
		img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			return nil, fmt.Errorf("image: pull %s: %w", path, err)
		}
		if _, err := img.Manifest(); err != nil {
			return nil, fmt.Errorf("image: pull %s: %w", path, err)
		}
		return img, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if !fi.IsDir() {
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			return nil, fmt.Errorf("image: tarball %s: %w", path, err)
		}
		return img, nil
	}
	idx, err := layout.ImageIndexFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("image: OCI layout %s: %w", path, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("image: OCI layout %s: index: %w", path, err)
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("image: OCI layout %s: holds %d manifests, want exactly one image", path, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("image: OCI layout %s: %w", path, err)
	}
	return img, nil
}

// syncTree fsyncs every file and directory below dir.
func syncTree(dir string) error {
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		serr := f.Sync()
		cerr := f.Close()
		return errors.Join(serr, cerr)
	})
}
