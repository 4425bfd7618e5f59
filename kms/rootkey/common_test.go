package rootkey

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

func writeFile(t *testing.T, path string, b []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, perm) // WriteFile's perm is subject to umask
}

func chmod(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// checkTamper flips every bit of a wrapped blob and of its aad in turn,
// truncates it at every length and changes the version byte: each must make
// Unwrap fail, and the untouched blob must still unwrap.
func checkTamper(t *testing.T, w Wrapper) {
	t.Helper()
	pt := []byte("a 32-byte data encryption key..!")
	aad := []byte("tenant=a;key=k1;version=3")
	b, err := w.Wrap(pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(b)*8; i++ {
		c := bytes.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		if got, err := w.Unwrap(c, aad); err == nil {
			t.Fatalf("bit %d of the blob flipped: unwrap succeeded with %q", i, got)
		}
	}
	for i := 0; i < len(aad)*8; i++ {
		a := bytes.Clone(aad)
		a[i/8] ^= 1 << (i % 8)
		if _, err := w.Unwrap(b, a); err == nil || !strings.Contains(err.Error(), "authentication") {
			t.Fatalf("bit %d of the aad flipped: %v, want authentication failure", i, err)
		}
	}
	if _, err := w.Unwrap(b, nil); err == nil {
		t.Fatal("unwrap without the aad succeeded")
	}
	if _, err := w.Unwrap(b, append(bytes.Clone(aad), 0)); err == nil {
		t.Fatal("unwrap with a longer aad succeeded")
	}
	for n := 0; n < len(b); n++ {
		if _, err := w.Unwrap(b[:n], aad); err == nil {
			t.Fatalf("blob truncated to %d of %d bytes: unwrap succeeded", n, len(b))
		}
	}
	for _, v := range []byte{0, 2, 0xff} {
		c := bytes.Clone(b)
		c[0] = v
		if _, err := w.Unwrap(c, aad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("format version %d not supported", v)) {
			t.Fatalf("version byte %d: %v", v, err)
		}
	}
	got, err := w.Unwrap(b, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("untouched blob: %q, %v", got, err)
	}
}

// checkConcurrent runs wraps and unwraps from several goroutines; with
// -race it shows the holder is safe for concurrent use.
func checkConcurrent(t *testing.T, w Wrapper) {
	t.Helper()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				pt := fmt.Appendf(nil, "worker %d item %d", g, i)
				aad := fmt.Appendf(nil, "row %d/%d", g, i)
				b, err := w.Wrap(pt, aad)
				if err != nil {
					errs <- err
					return
				}
				got, err := w.Unwrap(b, aad)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("worker %d item %d: got %q", g, i, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
