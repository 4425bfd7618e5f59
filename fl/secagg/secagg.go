// Package secagg is secure aggregation for federated learning in the shape
// of Bonawitz et al. 2017 ("Practical Secure Aggregation for
// Privacy-Preserving Machine Learning") and its SecAgg+ refinement (Bell
// et al. 2020): the aggregator learns the sum of the clients' fixed-point
// vectors and nothing else, and the sum survives clients dropping out.
// It is the pure algorithm, with no transport: the messages are values and
// bytes that a protocol would carry over authenticated (RA-TLS) channels.
// fl/protocol carries these messages (over RA-TLS, the pairwise shares
// end-to-end encrypted) and fl/scheduler drives the phases.
//
// Per round, with n clients, threshold t (t > n/2) and every pair of clients
// as neighbours (SecAgg+'s sparse neighbour graph is not implemented):
//
//  1. Advertise: client i draws an X25519 mask key pair (sk_i, pk_i) and a
//     32-byte self-mask seed b_i, and publishes pk_i.
//  2. Share: i splits sk_i and b_i into n Shamir shares (threshold t, over
//     GF(2⁸) byte by byte, x-coordinate = id + 1) and sends share j to j.
//     A share that does not decode, is addressed to someone else, claims
//     another sender or repeats one is refused naming its sender.
//  3. Mask: i quantises its vector to fixed point (Quantize: round(x·2^f)
//     as a two's-complement uint32) and uploads
//     y_i = x_i + PRG(b_i) + Σ_{j>i} PRG(s_ij) − Σ_{j<i} PRG(s_ij) (mod 2³²),
//     s_ij = SHA-256(label, min, max, X25519(sk_i, pk_j)).
//  4. Unmask: the aggregator names the survivors U (uploaded y) and the
//     dropped D. Each responding client reveals its share of b_j for every
//     j ∈ U and of sk_j for every j ∈ D, never both for one client. With t
//     shares the aggregator rebuilds each b_j (removes PRG(b_j)) and each
//     dropped sk_j (checked against pk_j; removes the pairwise masks the
//     survivors added for j), and Σ y_j becomes Σ x_j exactly. With more
//     than t reveals every extra seed share is checked against the
//     polynomial of the first t, so a corrupt one is refused rather than
//     yielding a wrong sum (with exactly t it cannot be detected).
//
// The PRG is ChaCha8 (math/rand/v2) keyed by the 32-byte seed.
package secagg

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	mrand "math/rand/v2"
	"slices"
)

// ErrMalformed is wrapped by every refusal of a malformed message.
var ErrMalformed = errors.New("secagg: malformed message")

// Params are a round's parameters, the same for every party.
type Params struct {
	N         int // clients, 2..254 (ids 0..N-1)
	Threshold int // shares needed to rebuild a secret, N/2 < t ≤ N
	Len       int // vector length
	FracBits  int // fixed-point fraction bits, 0..24
}

func (p Params) check() error {
	switch {
	case p.N < 2 || p.N > 254:
		return fmt.Errorf("secagg: %d clients: need 2..254", p.N)
	case p.Threshold <= p.N/2 || p.Threshold > p.N:
		return fmt.Errorf("secagg: threshold %d of %d clients: need N/2 < t ≤ N", p.Threshold, p.N)
	case p.Len < 1:
		return fmt.Errorf("secagg: vector length %d: need ≥ 1", p.Len)
	case p.FracBits < 0 || p.FracBits > 24:
		return fmt.Errorf("secagg: %d fraction bits: need 0..24", p.FracBits)
	}
	return nil
}

// Quantize maps x to fixed point with FracBits fraction bits. Every |x_i|
// must be small enough that N of them cannot overflow the int32 sum.
func (p Params) Quantize(x []float64) ([]uint32, error) {
	if len(x) != p.Len {
		return nil, fmt.Errorf("secagg: vector of %d values, want %d", len(x), p.Len)
	}
	limit := math.Ldexp(float64(math.MaxInt32/p.N), -p.FracBits)
	out := make([]uint32, len(x))
	for i, v := range x {
		if !(math.Abs(v) <= limit) {
			return nil, fmt.Errorf("secagg: value %v at index %d: outside ±%v (the sum of %d could overflow)", v, i, limit, p.N)
		}
		out[i] = uint32(int32(math.RoundToEven(math.Ldexp(v, p.FracBits))))
	}
	return out, nil
}

// Dequantize reads a fixed-point sum back.
func (p Params) Dequantize(sum []uint32) []float64 {
	out := make([]float64, len(sum))
	for i, v := range sum {
		out[i] = math.Ldexp(float64(int32(v)), -p.FracBits)
	}
	return out
}

// PublicKey is a client's advertised mask key.
type PublicKey struct {
	ID  int
	Key []byte // X25519 public key, 32 bytes
}

// Client is one client's state for one round. Not safe for concurrent use.
type Client struct {
	p      Params
	id     int
	sk     *ecdh.PrivateKey
	b      [32]byte
	pks    map[int]*ecdh.PublicKey
	shares map[int]Share // received, by sender
	masked bool
}

// NewClient draws client id's keys and self-mask seed from rand.
func NewClient(p Params, id int, rand io.Reader) (*Client, error) {
	sk, err := ecdh.X25519().GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("secagg: client %d: %w", id, err)
	}
	return NewClientWithKey(p, id, sk, rand)
}

// NewClientWithKey is NewClient with a mask key drawn beforehand (a
// protocol advertises the key before it knows the round's members, so
// before it knows N and its id); the self-mask seed is drawn from rand.
func NewClientWithKey(p Params, id int, sk *ecdh.PrivateKey, rand io.Reader) (*Client, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if id < 0 || id >= p.N {
		return nil, fmt.Errorf("secagg: client id %d: need 0..%d", id, p.N-1)
	}
	if sk == nil || sk.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("secagg: client %d: mask key is not an X25519 key", id)
	}
	c := &Client{p: p, id: id, sk: sk, shares: map[int]Share{}}
	if _, err := io.ReadFull(rand, c.b[:]); err != nil {
		return nil, fmt.Errorf("secagg: client %d: %w", id, err)
	}
	return c, nil
}

// Advertise is step 1.
func (c *Client) Advertise() PublicKey { return PublicKey{ID: c.id, Key: c.sk.PublicKey().Bytes()} }

// SetKeys records every client's advertised key (the aggregator relays
// them); all N must be present and distinct.
func (c *Client) SetKeys(keys []PublicKey) error {
	pks, err := parseKeys(c.p, keys)
	if err != nil {
		return err
	}
	if !slices.Equal(pks[c.id].Bytes(), c.sk.PublicKey().Bytes()) {
		return fmt.Errorf("secagg: client %d: the relayed key list does not hold this client's key", c.id)
	}
	c.pks = pks
	return nil
}

func parseKeys(p Params, keys []PublicKey) (map[int]*ecdh.PublicKey, error) {
	if len(keys) != p.N {
		return nil, fmt.Errorf("secagg: %d public keys, want %d", len(keys), p.N)
	}
	pks := map[int]*ecdh.PublicKey{}
	for _, k := range keys {
		if k.ID < 0 || k.ID >= p.N || pks[k.ID] != nil {
			return nil, fmt.Errorf("secagg: public key of client %d: id out of range or repeated: %w", k.ID, ErrMalformed)
		}
		pk, err := ecdh.X25519().NewPublicKey(k.Key)
		if err != nil {
			return nil, fmt.Errorf("secagg: public key of client %d: %v: %w", k.ID, err, ErrMalformed)
		}
		pks[k.ID] = pk
	}
	return pks, nil
}

// Share is one Shamir share pair from From to To: its shares of From's
// mask private key and self-mask seed, at x = To + 1.
type Share struct {
	From, To int
	MaskKey  [32]byte
	Seed     [32]byte
}

// shareSize is an encoded Share: version, from, to, 32 + 32 bytes.
const shareSize = 3 + 64

const shareVersion = 1

// Encode is a share's wire form.
func (s Share) Encode() []byte {
	b := make([]byte, 0, shareSize)
	b = append(b, shareVersion, byte(s.From), byte(s.To))
	b = append(b, s.MaskKey[:]...)
	return append(b, s.Seed[:]...)
}

// DecodeShare parses a share's wire form (untrusted bytes).
func DecodeShare(b []byte) (Share, error) {
	if len(b) != shareSize {
		return Share{}, fmt.Errorf("%d bytes, want %d: %w", len(b), shareSize, ErrMalformed)
	}
	if b[0] != shareVersion {
		return Share{}, fmt.Errorf("version %d, want %d: %w", b[0], shareVersion, ErrMalformed)
	}
	s := Share{From: int(b[1]), To: int(b[2])}
	copy(s.MaskKey[:], b[3:35])
	copy(s.Seed[:], b[35:67])
	return s, nil
}

// Shares is step 2: the encoded share for every client j (index j; this
// client's own share included, it keeps it).
func (c *Client) Shares(rand io.Reader) ([][]byte, error) {
	if c.pks == nil {
		return nil, fmt.Errorf("secagg: client %d: shares before the keys are set", c.id)
	}
	sk := c.sk.Bytes()
	keyShares, err := split(sk, c.p.N, c.p.Threshold, rand)
	if err != nil {
		return nil, err
	}
	seedShares, err := split(c.b[:], c.p.N, c.p.Threshold, rand)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, c.p.N)
	for j := range out {
		s := Share{From: c.id, To: j}
		copy(s.MaskKey[:], keyShares[j])
		copy(s.Seed[:], seedShares[j])
		out[j] = s.Encode()
		if j == c.id {
			c.shares[c.id] = s
		}
	}
	return out, nil
}

// Receive takes the share that client from (the sender its authenticated
// channel names) sent this client. A malformed share is refused naming
// from.
func (c *Client) Receive(from int, b []byte) error {
	s, err := DecodeShare(b)
	if err != nil {
		return fmt.Errorf("secagg: client %d: share from client %d: %w", c.id, from, err)
	}
	switch {
	case from < 0 || from >= c.p.N:
		return fmt.Errorf("secagg: client %d: share from unknown client %d: %w", c.id, from, ErrMalformed)
	case s.From != from:
		return fmt.Errorf("secagg: client %d: share from client %d claims sender %d: %w", c.id, from, s.From, ErrMalformed)
	case s.To != c.id:
		return fmt.Errorf("secagg: client %d: share from client %d is addressed to %d: %w", c.id, from, s.To, ErrMalformed)
	case c.masked:
		return fmt.Errorf("secagg: client %d: share from client %d after masking: %w", c.id, from, ErrMalformed)
	}
	if _, dup := c.shares[from]; dup {
		return fmt.Errorf("secagg: client %d: second share from client %d: %w", c.id, from, ErrMalformed)
	}
	c.shares[from] = s
	return nil
}

// Mask is step 3: the masked fixed-point vector to upload. It needs the
// shares of every client (a client whose shares did not arrive would have
// no way to be unmasked if it dropped).
func (c *Client) Mask(x []uint32) ([]uint32, error) {
	if len(x) != c.p.Len {
		return nil, fmt.Errorf("secagg: client %d: vector of %d values, want %d", c.id, len(x), c.p.Len)
	}
	if len(c.shares) != c.p.N {
		return nil, fmt.Errorf("secagg: client %d: has shares of %d of %d clients", c.id, len(c.shares), c.p.N)
	}
	y := slices.Clone(x)
	addPRG(y, c.b, 1)
	for j := 0; j < c.p.N; j++ {
		if j == c.id {
			continue
		}
		seed, err := pairSeed(c.sk, c.pks[j], c.id, j)
		if err != nil {
			return nil, err
		}
		addPRG(y, seed, pairSign(c.id, j))
	}
	c.masked = true
	return y, nil
}

// Reveal is one client's answer in step 4: its shares of the survivors'
// seeds and of the dropped clients' mask keys.
type Reveal struct {
	From  int
	Seeds map[int][32]byte // survivor → share of its self-mask seed
	Keys  map[int][32]byte // dropped → share of its mask private key
}

// Unmask is step 4 for this client. survivors and dropped must partition
// the clients; a client is never asked for both secrets of one client.
func (c *Client) Unmask(survivors, dropped []int) (Reveal, error) {
	if !c.masked {
		return Reveal{}, fmt.Errorf("secagg: client %d: unmask before masking", c.id)
	}
	seen := map[int]bool{}
	for _, j := range slices.Concat(survivors, dropped) {
		if j < 0 || j >= c.p.N || seen[j] {
			return Reveal{}, fmt.Errorf("secagg: client %d: survivors %v and dropped %v do not partition the clients", c.id, survivors, dropped)
		}
		seen[j] = true
	}
	if len(seen) != c.p.N || len(survivors) < c.p.Threshold {
		return Reveal{}, fmt.Errorf("secagg: client %d: %d survivors of %d (threshold %d), all clients must be named", c.id, len(survivors), c.p.N, c.p.Threshold)
	}
	r := Reveal{From: c.id, Seeds: map[int][32]byte{}, Keys: map[int][32]byte{}}
	for _, j := range survivors {
		r.Seeds[j] = c.shares[j].Seed
	}
	for _, j := range dropped {
		r.Keys[j] = c.shares[j].MaskKey
	}
	return r, nil
}

// Aggregate is the aggregator's step 4: from the survivors' masked vectors
// and at least Threshold reveals, the exact fixed-point sum of the
// survivors' inputs.
func Aggregate(p Params, keys []PublicKey, masked map[int][]uint32, reveals []Reveal) ([]uint32, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	pks, err := parseKeys(p, keys)
	if err != nil {
		return nil, err
	}
	if len(masked) < p.Threshold {
		return nil, fmt.Errorf("secagg: %d masked inputs, threshold %d", len(masked), p.Threshold)
	}
	var survivors, dropped []int
	for j := 0; j < p.N; j++ {
		if _, ok := masked[j]; ok {
			survivors = append(survivors, j)
		} else {
			dropped = append(dropped, j)
		}
	}
	sum := make([]uint32, p.Len)
	for _, j := range survivors {
		if len(masked[j]) != p.Len {
			return nil, fmt.Errorf("secagg: masked input of client %d: %d values, want %d: %w", j, len(masked[j]), p.Len, ErrMalformed)
		}
		for k, v := range masked[j] {
			sum[k] += v
		}
	}
	// Collect shares per secret, refusing a reveal that names the wrong set.
	from := map[int]bool{}
	seedShares := map[int]map[int][32]byte{} // owner → revealer → share
	keyShares := map[int]map[int][32]byte{}
	for _, r := range reveals {
		if r.From < 0 || r.From >= p.N || from[r.From] {
			return nil, fmt.Errorf("secagg: reveal from client %d: unknown or repeated sender: %w", r.From, ErrMalformed)
		}
		from[r.From] = true
		if len(r.Seeds) != len(survivors) || len(r.Keys) != len(dropped) {
			return nil, fmt.Errorf("secagg: reveal from client %d: %d seed and %d key shares, want %d and %d: %w", r.From, len(r.Seeds), len(r.Keys), len(survivors), len(dropped), ErrMalformed)
		}
		for _, j := range survivors {
			s, ok := r.Seeds[j]
			if !ok {
				return nil, fmt.Errorf("secagg: reveal from client %d: no seed share of survivor %d: %w", r.From, j, ErrMalformed)
			}
			if seedShares[j] == nil {
				seedShares[j] = map[int][32]byte{}
			}
			seedShares[j][r.From] = s
		}
		for _, j := range dropped {
			s, ok := r.Keys[j]
			if !ok {
				return nil, fmt.Errorf("secagg: reveal from client %d: no key share of dropped client %d: %w", r.From, j, ErrMalformed)
			}
			if keyShares[j] == nil {
				keyShares[j] = map[int][32]byte{}
			}
			keyShares[j][r.From] = s
		}
	}
	if len(from) < p.Threshold {
		return nil, fmt.Errorf("secagg: %d reveals, threshold %d: the sum cannot be unmasked", len(from), p.Threshold)
	}
	lg := lagrange{}
	for _, j := range survivors {
		if !consistent(lg, seedShares[j], p.Threshold) {
			return nil, fmt.Errorf("secagg: the shares of survivor %d's seed revealed by %v are inconsistent (a corrupt share): refusing a wrong sum", j, sortedKeys(seedShares[j]))
		}
		var seed [32]byte
		copy(seed[:], combineWith(lg, seedShares[j], p.Threshold))
		addPRG(sum, seed, -1)
	}
	for _, j := range dropped {
		skb := combineWith(lg, keyShares[j], p.Threshold)
		sk, err := ecdh.X25519().NewPrivateKey(skb)
		if err != nil || !slices.Equal(sk.PublicKey().Bytes(), pks[j].Bytes()) {
			return nil, fmt.Errorf("secagg: rebuilt mask key of dropped client %d does not match its public key (a corrupt share among %v)", j, sortedKeys(keyShares[j]))
		}
		for _, i := range survivors {
			seed, err := pairSeed(sk, pks[i], j, i)
			if err != nil {
				return nil, err
			}
			addPRG(sum, seed, -pairSign(i, j)) // survivor i added pairSign(i, j)·PRG
		}
	}
	return sum, nil
}

func sortedKeys(m map[int][32]byte) []int {
	return slices.Sorted(maps.Keys(m))
}

// pairSign is +1 for the smaller id of a pair, −1 for the larger.
func pairSign(self, other int) int {
	if self < other {
		return 1
	}
	return -1
}

func pairSeed(sk *ecdh.PrivateKey, pk *ecdh.PublicKey, a, b int) ([32]byte, error) {
	shared, err := sk.ECDH(pk)
	if err != nil {
		return [32]byte{}, fmt.Errorf("secagg: key agreement of clients %d and %d: %w", a, b, err)
	}
	lo, hi := min(a, b), max(a, b)
	h := sha256.New()
	h.Write([]byte("teeml/fl/secagg pair v1"))
	var ids [8]byte
	binary.LittleEndian.PutUint32(ids[:4], uint32(lo))
	binary.LittleEndian.PutUint32(ids[4:], uint32(hi))
	h.Write(ids[:])
	h.Write(shared)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// addPRG adds sign·PRG(seed) to y mod 2³².
func addPRG(y []uint32, seed [32]byte, sign int) {
	r := mrand.NewChaCha8(seed)
	for i := range y {
		v := uint32(r.Uint64())
		if sign > 0 {
			y[i] += v
		} else {
			y[i] -= v
		}
	}
}
