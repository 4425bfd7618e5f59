package datasets

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/internal/testenv"
)

// idxBytes builds an IDX file: magic, dims, payload.
func idxBytes(magic uint32, dims []uint32, payload []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	binary.Write(&b, binary.BigEndian, dims)
	b.Write(payload)
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestIDXRoundTrip(t *testing.T) {
	const n, rows, cols = 5, 3, 4
	pix := make([]byte, n*rows*cols)
	for i := range pix {
		pix[i] = byte(i * 7)
	}
	pix[0], pix[1] = 0, 255
	labels := []byte{3, 0, 2, 2, 1}
	dir := t.TempDir()
	imgFile := idxBytes(idxImagesMagic, []uint32{n, rows, cols}, pix)
	lblFile := idxBytes(idxLabelsMagic, []uint32{n}, labels)
	// Images gzip-compressed, labels plain: both must be accepted.
	imgPath := filepath.Join(dir, "imgs-idx3-ubyte.gz")
	lblPath := filepath.Join(dir, "lbls-idx1-ubyte")
	if err := os.WriteFile(imgPath, gz(t, imgFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lblPath, lblFile, 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadIDX(imgPath, lblPath)
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != n || ds.D != rows*cols || !slices.Equal(ds.ImageShape, []int{rows, cols, 1}) || ds.NumClasses != 4 {
		t.Fatalf("N %d D %d shape %v classes %d", ds.N, ds.D, ds.ImageShape, ds.NumClasses)
	}
	for i, p := range pix {
		if ds.X[i] != float32(p)/255 {
			t.Fatalf("pixel %d = %v, want %v", i, ds.X[i], float32(p)/255)
		}
	}
	if ds.X[0] != 0 || ds.X[1] != 1 {
		t.Fatalf("scaling: 0 → %v, 255 → %v", ds.X[0], ds.X[1])
	}
	for i, l := range labels {
		if ds.Y[i] != float32(l) {
			t.Fatalf("label %d = %v", i, ds.Y[i])
		}
	}
	if ds.IDs[4] != "imgs-idx3-ubyte-000004" {
		t.Fatalf("ID %q", ds.IDs[4])
	}

	// Count mismatch between the two files.
	short := filepath.Join(dir, "short")
	os.WriteFile(short, idxBytes(idxLabelsMagic, []uint32{4}, labels[:4]), 0o644)
	if _, err := LoadIDX(imgPath, short); err == nil || !strings.Contains(err.Error(), "5 images but") {
		t.Fatalf("count mismatch: err = %v", err)
	}
	if _, err := LoadIDX(filepath.Join(dir, "absent"), lblPath); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestIDXErrors(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "short header"},
		{"labels magic", idxBytes(idxLabelsMagic, []uint32{1, 1, 1}, []byte{0}), "magic 0x00000801, want 0x00000803"},
		{"truncated", idxBytes(idxImagesMagic, []uint32{10, 28, 28}, make([]byte, 100)), "truncated: header promises 7840 bytes, file has 100"},
		{"zero rows", idxBytes(idxImagesMagic, []uint32{1, 0, 28}, nil), "image size 0x28"},
		{"huge dims", idxBytes(idxImagesMagic, []uint32{1, 1 << 20, 1 << 20}, nil), "outside 1..4096"},
		{"huge count", idxBytes(idxImagesMagic, []uint32{0xffffffff, 4096, 4096}, nil), "exceed"},
		{"lying header", idxBytes(idxImagesMagic, []uint32{1 << 20, 32, 32}, []byte{1, 2, 3}), "truncated"},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 0}, "gzip"},
	}
	for _, c := range cases {
		_, err := ReadIDXImages(bytes.NewReader(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := ReadIDXLabels(bytes.NewReader(idxBytes(idxImagesMagic, []uint32{1}, []byte{0}))); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Errorf("labels with images magic: err = %v", err)
	}
	if _, err := ReadIDXLabels(bytes.NewReader(gz(t, idxBytes(idxLabelsMagic, []uint32{3}, []byte{1})))); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated gzip labels: err = %v", err)
	}
}

// requireMNIST returns the MNIST directory or skips; under CI=true a missing
// module is a failure, because CI downloads it first.
func requireMNIST(t *testing.T) string {
	t.Helper()
	dir, err := MNISTDir()
	if err != nil {
		testenv.MustRun(t, "MNIST unavailable: %v", err)
	}
	return dir
}

func TestLoadMNIST(t *testing.T) {
	dir := requireMNIST(t)
	type want struct {
		ds   *Dataset
		n    int
		id   string
		lbl0 float32
	}
	var cases []want
	if raceEnabled {
		// Only the 10000-image test set: see raceEnabled.
		imgs, _ := findIDX(dir, "t10k-images-idx3-ubyte")
		labels, _ := findIDX(dir, "t10k-labels-idx1-ubyte")
		test, err := loadIDX(imgs, labels, "mnist", "mnist-test")
		if err != nil {
			t.Fatal(err)
		}
		cases = []want{{test, 10000, "mnist-test-000000", 7}}
	} else {
		train, test, err := LoadMNIST(dir)
		if err != nil {
			t.Fatal(err)
		}
		cases = []want{{train, 60000, "mnist-train-000000", 5}, {test, 10000, "mnist-test-000000", 7}}
	}
	for _, c := range cases {
		ds := c.ds
		if ds.N != c.n || ds.D != 784 || len(ds.X) != c.n*784 || !slices.Equal(ds.ImageShape, []int{28, 28, 1}) || ds.NumClasses != 10 {
			t.Fatalf("%s: %dx%d shape %v classes %d", c.id, ds.N, ds.D, ds.ImageShape, ds.NumClasses)
		}
		if ds.IDs[0] != c.id || ds.Y[0] != c.lbl0 {
			t.Fatalf("first row %s label %v, want %s label %v", ds.IDs[0], ds.Y[0], c.id, c.lbl0)
		}
		lo, hi := slices.Min(ds.X), slices.Max(ds.X)
		if lo != 0 || hi != 1 {
			t.Fatalf("pixels in [%v, %v], want [0, 1]", lo, hi)
		}
		counts := make([]int, 10)
		for _, y := range ds.Y {
			counts[int(y)]++
		}
		if slices.Min(counts) < c.n/20 {
			t.Fatalf("class counts %v", counts)
		}
	}
}

func TestLoadFashionMNIST(t *testing.T) {
	if _, err := os.Stat(FashionMNISTDebianDir); err != nil {
		// Not installed by default; .ci/run installs it.
		testenv.MustRun(t, "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): %v", err)
	}
	if raceEnabled {
		t.Skip("full IDX loads are left to the run without -race (see raceEnabled)")
	}
	train, test, err := LoadFashionMNIST("")
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 60000 || test.N != 10000 || train.D != 784 || train.ClassNames[9] != "Ankle boot" {
		t.Fatalf("train %dx%d test %d names %v", train.N, train.D, test.N, train.ClassNames)
	}
	// Fashion-MNIST's first training image is an ankle boot (9).
	if train.Y[0] != 9 || train.IDs[0] != "fashion_mnist-train-000000" {
		t.Fatalf("first label %v id %s", train.Y[0], train.IDs[0])
	}
}

func TestLoadMNISTMissingDir(t *testing.T) {
	_, _, err := LoadMNIST(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "train-images-idx3-ubyte") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzReadIDXImages(f *testing.F) {
	f.Add(idxBytes(idxImagesMagic, []uint32{2, 2, 2}, []byte{0, 1, 2, 3, 4, 5, 6, 7}))
	f.Add(idxBytes(idxImagesMagic, []uint32{1, 28, 28}, make([]byte, 784)))
	f.Add(idxBytes(idxImagesMagic, []uint32{0, 1, 1}, nil))
	f.Add(idxBytes(idxImagesMagic, []uint32{0xffffffff, 0xffffffff, 0xffffffff}, nil))
	f.Add(idxBytes(idxImagesMagic, []uint32{1 << 20, 28, 28}, []byte{1, 2}))
	f.Add(idxBytes(idxLabelsMagic, []uint32{3}, []byte{1, 2, 3}))
	f.Add(gz(f, idxBytes(idxImagesMagic, []uint32{1, 2, 2}, []byte{9, 9, 9, 9})))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := ReadIDXImages(bytes.NewReader(data))
		if err != nil {
			return
		}
		if img.N*img.Rows*img.Cols != len(img.Pixels) || img.Rows < 1 || img.Cols < 1 {
			t.Fatalf("inconsistent result %dx%dx%d with %d pixels", img.N, img.Rows, img.Cols, len(img.Pixels))
		}
		// Uncompressed input cannot yield more pixels than it holds.
		if !(len(data) > 1 && data[0] == 0x1f && data[1] == 0x8b) && len(img.Pixels) > len(data) {
			t.Fatalf("%d pixels from %d bytes", len(img.Pixels), len(data))
		}
	})
}

func FuzzReadIDXLabels(f *testing.F) {
	f.Add(idxBytes(idxLabelsMagic, []uint32{3}, []byte{1, 2, 3}))
	f.Add(idxBytes(idxLabelsMagic, []uint32{0}, nil))
	f.Add(idxBytes(idxLabelsMagic, []uint32{0xffffffff}, []byte{1}))
	f.Add(idxBytes(idxImagesMagic, []uint32{1, 1, 1}, []byte{1}))
	f.Add(gz(f, idxBytes(idxLabelsMagic, []uint32{2}, []byte{4, 5})))
	f.Add([]byte{0, 0, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		labels, err := ReadIDXLabels(bytes.NewReader(data))
		if err != nil {
			return
		}
		if !(len(data) > 1 && data[0] == 0x1f && data[1] == 0x8b) && len(labels)+8 > len(data) {
			t.Fatalf("%d labels from %d bytes", len(labels), len(data))
		}
	})
}

func TestConcatIDX(t *testing.T) {
	// Load("mnist") joins train and test; check the join on small files.
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ai := write("a-img", idxBytes(idxImagesMagic, []uint32{2, 1, 2}, []byte{0, 255, 255, 0}))
	al := write("a-lbl", idxBytes(idxLabelsMagic, []uint32{2}, []byte{1, 0}))
	bi := write("b-img", idxBytes(idxImagesMagic, []uint32{1, 1, 2}, []byte{51, 51}))
	bl := write("b-lbl", idxBytes(idxLabelsMagic, []uint32{1}, []byte{1}))
	a, err := loadIDX(ai, al, "x", "x-train")
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadIDX(bi, bl, "x", "x-test")
	if err != nil {
		t.Fatal(err)
	}
	all, err := concatIDX(a, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if all.N != 3 || !slices.Equal(all.X, []float32{0, 1, 1, 0, 0.2, 0.2}) || !slices.Equal(all.Y, []float32{1, 0, 1}) ||
		!slices.Equal(all.IDs, []string{"x-train-000000", "x-train-000001", "x-test-000000"}) {
		t.Fatalf("concat: %+v", all)
	}
}
