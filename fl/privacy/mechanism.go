package privacy

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	mrand "math/rand/v2"
	"slices"

	"github.com/teeml/teeml/ml/tensor"
)

// ClipInPlace scales delta so that its L2 norm is at most clip (Abadi et
// al. 2016; McMahan et al. 2018: Δ·min(1, C/‖Δ‖)), and returns the norm
// before clipping. clip must be > 0.
func ClipInPlace(delta tensor.Weights, clip float64) (norm float64) {
	norm = delta.L2Norm()
	if norm > clip {
		f := clip / norm
		for _, t := range delta {
			for j, v := range t.Data {
				t.Data[j] = float32(float64(v) * f)
			}
		}
	}
	return norm
}

// Noise draws Gaussian noise for the mechanism. Its generator is ChaCha8
// keyed from crypto/rand unless a key is given (tests): noise an observer
// could regenerate would protect nothing, so it never comes from the plan.
type Noise struct {
	r *mrand.Rand
}

// NewNoise returns a noise source; key nil means a fresh crypto/rand key.
func NewNoise(key *[32]byte) (*Noise, error) {
	var k [32]byte
	if key != nil {
		k = *key
	} else if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("privacy: noise key: %w", err)
	}
	return &Noise{r: mrand.New(mrand.NewChaCha8(k))}, nil
}

// AddInPlace adds independent N(0, std²) to every value of w.
func (n *Noise) AddInPlace(w tensor.Weights, std float64) {
	if std == 0 {
		return
	}
	for _, t := range w {
		for j, v := range t.Data {
			t.Data[j] = float32(float64(v) + std*n.r.NormFloat64())
		}
	}
}

// Normal is one N(0, std²) draw.
func (n *Noise) Normal(std float64) float64 { return std * n.r.NormFloat64() }

// Sample is the Poisson sample of round r: each of clients is included
// independently with probability q, from a generator seeded by (seed, r)
// alone, so that every party of the plan and a resumed aggregator compute
// the same set. The result keeps the order of clients.
func Sample(clients []string, q float64, seed int64, round int) []string {
	if q >= 1 {
		return slices.Clone(clients)
	}
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(seed))
	binary.LittleEndian.PutUint64(b[8:], uint64(round))
	h.Write([]byte("teeml/fl/privacy sample v1"))
	h.Write(b[:])
	r := mrand.New(mrand.NewPCG(h.Sum64(), uint64(round)))
	var out []string
	for _, c := range clients {
		if r.Float64() < q {
			out = append(out, c)
		}
	}
	return out
}

// AdaptiveNoiseSplit returns the noise multiplier left for the clipped
// update when a share of the privacy goes to the noised clipped count with
// multiplier countSigma (Andrew et al. 2021, Theorem 1):
// z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2). It is an error when countSigma is too
// small for z (2σ_b ≤ z leaves nothing for the update).
func AdaptiveNoiseSplit(z, countSigma float64) (float64, error) {
	if !(countSigma > 0) || !(z > 0) {
		return 0, fmt.Errorf("noise multiplier %v and clipped-count noise %v: both must be > 0: %w", z, countSigma, ErrParameter)
	}
	if 2*countSigma <= z {
		return 0, fmt.Errorf("clipped-count noise %v: must exceed half the noise multiplier %v (Andrew et al. Thm 1): %w", countSigma, z, ErrParameter)
	}
	return 1 / math.Sqrt(1/(z*z)-1/(4*countSigma*countSigma)), nil
}

// GeometricClipUpdate is Andrew et al. 2021's geometric update of the clip
// norm: C ← C·exp(−η·(b̄ − γ)), where b̄ is the (noised) fraction of
// updates that were not clipped and γ the target quantile.
func GeometricClipUpdate(clip, unclippedFraction, targetQuantile, lr float64) float64 {
	return clip * math.Exp(-lr*(unclippedFraction-targetQuantile))
}
