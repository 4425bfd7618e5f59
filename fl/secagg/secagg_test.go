package secagg

import (
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
)

type round struct {
	p       Params
	clients []*Client
	keys    []PublicKey
	inputs  [][]uint32
}

// setup runs steps 1–2 for n clients with random fixed-point inputs.
func setup(t *testing.T, n, threshold, length int) *round {
	t.Helper()
	p := Params{N: n, Threshold: threshold, Len: length, FracBits: 16}
	r := &round{p: p}
	rng := mrand.New(mrand.NewPCG(uint64(n), uint64(length)))
	for i := 0; i < n; i++ {
		c, err := NewClient(p, i, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		r.clients = append(r.clients, c)
		r.keys = append(r.keys, c.Advertise())
		x := make([]float64, length)
		for k := range x {
			x[k] = rng.NormFloat64() * 3
		}
		q, err := p.Quantize(x)
		if err != nil {
			t.Fatal(err)
		}
		r.inputs = append(r.inputs, q)
	}
	for _, c := range r.clients {
		if err := c.SetKeys(r.keys); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range r.clients {
		shares, err := c.Shares(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for j, s := range shares {
			if j != i {
				if err := r.clients[j].Receive(i, s); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return r
}

// run masks the inputs of the uploaders, collects reveals from the
// responders and aggregates.
func (r *round) run(t *testing.T, uploaders, responders []int) ([]uint32, error) {
	t.Helper()
	masked := map[int][]uint32{}
	for _, i := range uploaders {
		y, err := r.clients[i].Mask(r.inputs[i])
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(y, r.inputs[i]) {
			t.Fatalf("client %d: masked input equals its input", i)
		}
		masked[i] = y
	}
	var dropped []int
	for i := 0; i < r.p.N; i++ {
		if !slices.Contains(uploaders, i) {
			dropped = append(dropped, i)
		}
	}
	var reveals []Reveal
	for _, i := range responders {
		rv, err := r.clients[i].Unmask(uploaders, dropped)
		if err != nil {
			t.Fatal(err)
		}
		reveals = append(reveals, rv)
	}
	return Aggregate(r.p, r.keys, masked, reveals)
}

func (r *round) plainSum(ids []int) []uint32 {
	sum := make([]uint32, r.p.Len)
	for _, i := range ids {
		for k, v := range r.inputs[i] {
			sum[k] += v
		}
	}
	return sum
}

func ids(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// The unmasked sum equals the plain fixed-point sum exactly.
func TestUnmaskedSumIsExact(t *testing.T) {
	r := setup(t, 10, 6, 1000)
	got, err := r.run(t, ids(0, 10), ids(0, 10))
	if err != nil {
		t.Fatal(err)
	}
	if want := r.plainSum(ids(0, 10)); !slices.Equal(got, want) {
		t.Fatalf("unmasked sum differs from the plain fixed-point sum")
	}
	// And it reads back as the float sum to within the quantisation.
	f := r.p.Dequantize(got)
	if f[0] == 0 && f[1] == 0 {
		t.Errorf("dequantised sum looks empty: %v", f[:2])
	}
}

// A third of the clients killed after masking (they uploaded, they never
// answer the unmask step): the round still completes with the exact sum.
func TestDropoutsAfterMasking(t *testing.T) {
	r := setup(t, 9, 5, 257)
	got, err := r.run(t, ids(0, 9), ids(3, 9))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, r.plainSum(ids(0, 9))) {
		t.Fatal("sum with 3 of 9 silent after masking differs from the plain sum")
	}
}

// A third dropped before masking: their pairwise masks are removed from the
// survivors' vectors with their rebuilt keys; the sum is the survivors'.
func TestDropoutsBeforeMasking(t *testing.T) {
	r := setup(t, 9, 5, 257)
	got, err := r.run(t, ids(3, 9), ids(3, 8)) // 6 uploaded, 5 (= t) answer
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, r.plainSum(ids(3, 9))) {
		t.Fatal("sum with 3 of 9 dropped before masking differs from the survivors' plain sum")
	}
	// Fewer than t answers: refused, not a wrong sum.
	r = setup(t, 9, 5, 8)
	if _, err := r.run(t, ids(3, 9), ids(3, 7)); err == nil || !strings.Contains(err.Error(), "4 reveals, threshold 5") {
		t.Errorf("4 reveals of threshold 5: err = %v", err)
	}
}

// A malformed share is refused, naming its sender.
func TestMalformedShareRefusedNamingSender(t *testing.T) {
	p := Params{N: 4, Threshold: 3, Len: 1}
	var cs []*Client
	var keys []PublicKey
	for i := 0; i < 4; i++ {
		c, err := NewClient(p, i, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		keys = append(keys, c.Advertise())
	}
	for _, c := range cs {
		if err := c.SetKeys(keys); err != nil {
			t.Fatal(err)
		}
	}
	shares, err := cs[2].Shares(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := shares[0]
	otherTo := slices.Clone(good)
	otherTo[2] = 3
	otherFrom := slices.Clone(good)
	otherFrom[1] = 1
	badVersion := slices.Clone(good)
	badVersion[0] = 9
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"truncated": {good[:20], "share from client 2: 20 bytes, want 67"},
		"version":   {badVersion, "share from client 2: version 9"},
		"addressee": {otherTo, "share from client 2 is addressed to 3"},
		"sender":    {otherFrom, "share from client 2 claims sender 1"},
		"empty":     {nil, "share from client 2: 0 bytes"},
		"oversized": {append(slices.Clone(good), 0), "share from client 2: 68 bytes"},
	} {
		err := cs[0].Receive(2, c.b)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line with %q", name, err, c.want)
		}
	}
	if err := cs[0].Receive(2, good); err != nil {
		t.Fatal(err)
	}
	if err := cs[0].Receive(2, good); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "second share from client 2") {
		t.Errorf("duplicate: err = %v", err)
	}
	if _, err := cs[0].Mask([]uint32{1}); err == nil {
		t.Error("masked without every client's shares")
	}
}

// A corrupted key share is detected when the rebuilt key does not match
// the advertised public key; a client never reveals both secrets of one
// client.
func TestCorruptShareAndOverlapRefused(t *testing.T) {
	r := setup(t, 5, 3, 4)
	masked := map[int][]uint32{}
	for _, i := range ids(1, 5) {
		masked[i], _ = r.clients[i].Mask(r.inputs[i])
	}
	var reveals []Reveal
	for _, i := range ids(1, 4) {
		rv, err := r.clients[i].Unmask(ids(1, 5), []int{0})
		if err != nil {
			t.Fatal(err)
		}
		reveals = append(reveals, rv)
	}
	k := reveals[0].Keys[0]
	k[5] ^= 1
	reveals[0].Keys[0] = k
	if _, err := Aggregate(r.p, r.keys, masked, reveals); err == nil || !strings.Contains(err.Error(), "mask key of dropped client 0 does not match") {
		t.Errorf("corrupt key share: err = %v", err)
	}
	if _, err := r.clients[1].Unmask(ids(0, 5), []int{0}); err == nil {
		t.Error("Unmask revealed both secrets of client 0")
	}
}

func TestShamirAnyThresholdSubset(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	shares, err := split(secret, 7, 4, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, subset := range [][]int{{0, 1, 2, 3}, {3, 4, 5, 6}, {0, 2, 4, 6}} {
		m := map[int][32]byte{}
		for _, j := range subset {
			m[j] = [32]byte(shares[j])
		}
		if got := combine(m, 4); !slices.Equal(got, secret) {
			t.Errorf("subset %v rebuilt %x, want %x", subset, got, secret)
		}
	}
	m := map[int][32]byte{0: [32]byte(shares[0]), 1: [32]byte(shares[1]), 2: [32]byte(shares[2])}
	if got := combine(m, 4); slices.Equal(got, secret) {
		t.Error("3 shares of threshold 4 rebuilt the secret")
	}
	for a := 1; a < 256; a++ {
		if gfMul(byte(a), gfInv(byte(a))) != 1 {
			t.Fatalf("gfInv(%d) wrong", a)
		}
	}
}

func TestQuantizeBoundsAndParams(t *testing.T) {
	p := Params{N: 100, Threshold: 51, Len: 2, FracBits: 16}
	if _, err := p.Quantize([]float64{1, 1e6}); err == nil || !strings.Contains(err.Error(), "index 1") {
		t.Errorf("overflowing value: err = %v", err)
	}
	q, err := p.Quantize([]float64{-1.25, 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Dequantize(q); got[0] != -1.25 || got[1] != 0.5 {
		t.Errorf("round trip %v", got)
	}
	for _, bad := range []Params{{N: 1, Threshold: 1, Len: 1}, {N: 10, Threshold: 5, Len: 1}, {N: 10, Threshold: 6, Len: 0}} {
		if _, err := NewClient(bad, 0, rand.Reader); err == nil {
			t.Errorf("params %+v accepted", bad)
		}
	}
}

// A corrupt seed share is refused when more than t reveals arrive (with
// exactly t it could not be told from a good one).
func TestCorruptSeedShareRefused(t *testing.T) {
	r := setup(t, 7, 4, 16)
	masked := map[int][]uint32{}
	for i := 0; i < 7; i++ {
		masked[i], _ = r.clients[i].Mask(r.inputs[i])
	}
	var reveals []Reveal
	for i := 0; i < 6; i++ { // 6 > t = 4
		rv, err := r.clients[i].Unmask(ids(0, 7), nil)
		if err != nil {
			t.Fatal(err)
		}
		reveals = append(reveals, rv)
	}
	if got, err := Aggregate(r.p, r.keys, masked, reveals); err != nil || !slices.Equal(got, r.plainSum(ids(0, 7))) {
		t.Fatalf("honest reveals: err %v", err)
	}
	s := reveals[5].Seeds[2]
	s[0] ^= 0x40
	reveals[5].Seeds[2] = s
	if _, err := Aggregate(r.p, r.keys, masked, reveals); err == nil || !strings.Contains(err.Error(), "survivor 2's seed") {
		t.Errorf("corrupt seed share: err = %v", err)
	}
}
