package protocol

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flv1 "github.com/teeml/teeml/api/proto/teeml/fl/v1"
	"github.com/teeml/teeml/fl/scheduler"
	"github.com/teeml/teeml/fl/secagg"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ratls"
)

// Secure aggregation on the wire (fl/secagg's algorithm, fl/scheduler's
// phases).
//
// Key binding. Each round a collaborator draws two X25519 key pairs: the
// mask key (fl/secagg's pairwise masks) and the encryption key (its
// shares' end-to-end encryption). It advertises them in a key
// certificate: an X.509 certificate issued by its federation identity
// certificate (signed by its identity key, as its RA-TLS certificates
// are), valid for one hour, whose one URI SAN is
//
//	urn:teeml:secagg:v1:<plan hash>:<round>:<mask key hex>:<enc key hex>
//
// Every collaborator verifies every member's [key certificate, identity
// certificate] chain with the federation's identity verifier (the same
// check as an RA-TLS peer's: signing CA, root, CRL, membership, role
// collaborator) and that it names the member, the plan and the round. The
// aggregator relays the certificates; it cannot substitute a key without
// a member's identity key.
//
// Shares. The Shamir share pair from i to j is sealed with AES-256-GCM
// under SHA-256(label, plan hash, round, i, j, X25519(enc_i, enc_j)), with
// the same context as associated data and a random 12-byte nonce in front:
// the aggregator relays ciphertext only.

// SecAggIdentity is what a collaborator needs for secure aggregation: its
// identity key and certificate (to sign its round keys) and the
// federation's identity verifier (to check the other members').
type SecAggIdentity struct {
	Key  *ecdsa.PrivateKey
	Cert *x509.Certificate
	// Verifier checks a [key certificate, identity certificate] chain
	// (pki.Federation or pki.LiveFederation).
	Verifier IdentityVerifier
}

// IdentityVerifier is the federation's identity check (pki.Federation's
// VerifyIdentity).
type IdentityVerifier interface {
	VerifyIdentity(chain []*x509.Certificate, now time.Time) (*ratls.Identity, error)
}

// SecAggKeys are a member's round keys, as read from its key certificate.
type SecAggKeys struct {
	PlanHash string
	Round    int64
	Mask     []byte // X25519 public key
	Enc      []byte // X25519 public key
}

const secaggURN = "urn:teeml:secagg:v1:"

func (k SecAggKeys) uri() (*url.URL, error) {
	return url.Parse(secaggURN + k.PlanHash + ":" + strconv.FormatInt(k.Round, 10) + ":" + hex.EncodeToString(k.Mask) + ":" + hex.EncodeToString(k.Enc))
}

// ParseSecAggKeys reads the round keys from a key certificate's URI
// (untrusted bytes: it checks the form, not the signature).
func ParseSecAggKeys(cert *x509.Certificate) (SecAggKeys, error) {
	if len(cert.URIs) != 1 {
		return SecAggKeys{}, fmt.Errorf("key certificate has %d URIs, want 1", len(cert.URIs))
	}
	return parseSecAggURI(cert.URIs[0].String())
}

func parseSecAggURI(u string) (SecAggKeys, error) {
	rest, ok := strings.CutPrefix(u, secaggURN)
	if !ok {
		return SecAggKeys{}, fmt.Errorf("key certificate URI %.80q is not %s…", u, secaggURN)
	}
	f := strings.Split(rest, ":")
	if len(f) != 4 {
		return SecAggKeys{}, fmt.Errorf("key certificate URI has %d fields after %s, want 4", len(f), secaggURN)
	}
	round, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || round < 1 {
		return SecAggKeys{}, fmt.Errorf("key certificate URI: round %.20q is not a positive integer", f[1])
	}
	if h, err := hex.DecodeString(f[0]); err != nil || len(h) != sha256.Size || hex.EncodeToString(h) != f[0] {
		return SecAggKeys{}, fmt.Errorf("key certificate URI: plan hash %.80q is not a lower-case hex SHA-256", f[0])
	}
	k := SecAggKeys{PlanHash: f[0], Round: round}
	for i, dst := range []*[]byte{&k.Mask, &k.Enc} {
		b, err := hex.DecodeString(f[2+i])
		if err != nil || len(b) != 32 {
			return SecAggKeys{}, fmt.Errorf("key certificate URI: key %d is not 32 bytes of hex", i+1)
		}
		if _, err := ecdh.X25519().NewPublicKey(b); err != nil {
			return SecAggKeys{}, fmt.Errorf("key certificate URI: key %d: %v", i+1, err)
		}
		*dst = b
	}
	return k, nil
}

// keyCert issues this collaborator's key certificate for keys.
func (id *SecAggIdentity) keyCert(name string, keys SecAggKeys, now time.Time) ([]byte, error) {
	u, err := keys.uri()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, URIs: []*url.URL{u},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, id.Cert, &id.Key.PublicKey, id.Key)
}

// verifyMember checks member name's key certificate chain against the
// federation and returns its keys for planHash and round.
func (id *SecAggIdentity) verifyMember(m *flv1.SecAggMember, planHash string, round int64, now time.Time) (SecAggKeys, error) {
	kc, err := x509.ParseCertificate(m.GetKeyCert())
	if err != nil {
		return SecAggKeys{}, fmt.Errorf("member %q: key certificate: %v", m.GetName(), err)
	}
	ic, err := x509.ParseCertificate(m.GetIdentityCert())
	if err != nil {
		return SecAggKeys{}, fmt.Errorf("member %q: identity certificate: %v", m.GetName(), err)
	}
	who, err := id.Verifier.VerifyIdentity([]*x509.Certificate{kc, ic}, now)
	if err != nil {
		return SecAggKeys{}, fmt.Errorf("member %q: key certificate: %v", m.GetName(), err)
	}
	if who.Name != m.GetName() || who.Role != CollaboratorRole {
		return SecAggKeys{}, fmt.Errorf("member %q: key certificate belongs to %q (%s)", m.GetName(), who.Name, who.Role)
	}
	k, err := ParseSecAggKeys(kc)
	if err != nil {
		return SecAggKeys{}, fmt.Errorf("member %q: %v", m.GetName(), err)
	}
	if k.PlanHash != planHash || k.Round != round {
		return SecAggKeys{}, fmt.Errorf("member %q: keys for plan %s round %d, want plan %s round %d", m.GetName(), ShortHash(k.PlanHash), k.Round, ShortHash(planHash), round)
	}
	return k, nil
}

// shareAEAD is the AEAD and associated data of the shares from → to.
func shareAEAD(sk *ecdh.PrivateKey, peer []byte, planHash string, round int64, from, to string) (cipher.AEAD, []byte, error) {
	pk, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, nil, err
	}
	shared, err := sk.ECDH(pk)
	if err != nil {
		return nil, nil, err
	}
	var ad []byte
	ad = append(ad, "teeml/fl/secagg share v1\x00"...)
	ad = append(ad, planHash...)
	ad = binary.BigEndian.AppendUint64(append(ad, 0), uint64(round))
	ad = append(append(ad, from...), 0)
	ad = append(append(ad, to...), 0)
	h := sha256.New()
	h.Write(ad)
	h.Write(shared)
	block, err := aes.NewCipher(h.Sum(nil))
	if err != nil {
		return nil, nil, err
	}
	g, err := cipher.NewGCM(block)
	return g, ad, err
}

func sealShare(sk *ecdh.PrivateKey, peer []byte, planHash string, round int64, from, to string, share []byte) ([]byte, error) {
	g, ad, err := shareAEAD(sk, peer, planHash, round, from, to)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(share)+g.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, share, ad), nil
}

// openShare decrypts an envelope (untrusted bytes).
func openShare(sk *ecdh.PrivateKey, peer []byte, planHash string, round int64, from, to string, ct []byte) ([]byte, error) {
	g, ad, err := shareAEAD(sk, peer, planHash, round, from, to)
	if err != nil {
		return nil, err
	}
	if len(ct) < g.NonceSize()+g.Overhead() {
		return nil, fmt.Errorf("%d bytes of ciphertext, too short", len(ct))
	}
	pt, err := g.Open(nil, ct[:g.NonceSize()], ct[g.NonceSize():], ad)
	if err != nil {
		return nil, errors.New("does not decrypt (not sealed by the member for this round)")
	}
	return pt, nil
}

// collaborator side

// secaggRound runs one round's secure aggregation around training: the
// advertise and share phases, then train (in train), mask and upload,
// unmask and reveal.
type secaggRound struct {
	c       *Collaborator
	round   int64
	mask    *ecdh.PrivateKey
	enc     *ecdh.PrivateKey
	members []string
	keys    []SecAggKeys
	client  *secagg.Client
	p       secagg.Params
}

// secaggSetup is the advertise and share phases for a model of n params.
func (c *Collaborator) secaggSetup(ctx context.Context, round int64, n int, fracBits int) (*secaggRound, error) {
	id := c.cfg.SecAgg
	if id == nil {
		return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: errors.New("the round uses secure aggregation but this collaborator has no SecAgg identity")}
	}
	sr := &secaggRound{c: c, round: round}
	var err error
	if sr.mask, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	if sr.enc, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	own := SecAggKeys{PlanHash: c.cfg.PlanHash, Round: round, Mask: sr.mask.PublicKey().Bytes(), Enc: sr.enc.PublicKey().Bytes()}
	kc, err := id.keyCert(c.cfg.Name, own, time.Now())
	if err != nil {
		return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: fmt.Errorf("key certificate: %w", err)}
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout+c.cfg.SecAggPhaseWait)
	adv, err := c.cl.SecAggAdvertise(cctx, &flv1.SecAggAdvertiseRequest{Round: round, Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash,
		KeyCert: kc, IdentityCert: id.Cert.Raw})
	cancel()
	if err != nil {
		return nil, err
	}
	if c.afterAdvertise != nil {
		c.afterAdvertise(round)
	}
	now := time.Now()
	self := -1
	for i, m := range adv.Members {
		k, err := id.verifyMember(m, c.cfg.PlanHash, round, now)
		if err != nil {
			return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: fmt.Errorf("advertised keys refused: %w", err)}
		}
		if m.Name == c.cfg.Name {
			if string(k.Mask) != string(own.Mask) || string(k.Enc) != string(own.Enc) {
				return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: errors.New("the relayed member list does not hold this collaborator's keys")}
			}
			self = i
		}
		sr.members = append(sr.members, m.Name)
		sr.keys = append(sr.keys, k)
	}
	if self < 0 {
		return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: errors.New("the relayed member list does not name this collaborator")}
	}
	sr.p = secagg.Params{N: len(sr.members), Threshold: int(adv.Threshold), Len: n + 1, FracBits: fracBits}
	if sr.client, err = secagg.NewClientWithKey(sr.p, self, sr.mask, rand.Reader); err != nil {
		return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: err}
	}
	pks := make([]secagg.PublicKey, len(sr.keys))
	for i, k := range sr.keys {
		pks[i] = secagg.PublicKey{ID: i, Key: k.Mask}
	}
	if err := sr.client.SetKeys(pks); err != nil {
		return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: err}
	}
	shares, err := sr.client.Shares(rand.Reader)
	if err != nil {
		return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: err}
	}
	var env []*flv1.SecAggEnvelope
	for j, m := range sr.members {
		if j == self {
			continue
		}
		ct, err := sealShare(sr.enc, sr.keys[j].Enc, c.cfg.PlanHash, round, c.cfg.Name, m, shares[j])
		if err != nil {
			return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: err}
		}
		env = append(env, &flv1.SecAggEnvelope{From: c.cfg.Name, To: m, Ciphertext: ct})
	}
	cctx, cancel = context.WithTimeout(ctx, c.cfg.CallTimeout+c.cfg.SecAggPhaseWait)
	got, err := c.cl.SecAggShare(cctx, &flv1.SecAggShareRequest{Round: round, Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash, Shares: env})
	cancel()
	if err != nil {
		return nil, err
	}
	from := map[string]bool{}
	for _, e := range got.Shares {
		j := indexOf(sr.members, e.From)
		if j < 0 || j == self || e.To != c.cfg.Name || from[e.From] {
			return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: fmt.Errorf("relayed share from %q to %q is not from another member to this one, or repeated", e.From, e.To)}
		}
		from[e.From] = true
		pt, err := openShare(sr.enc, sr.keys[j].Enc, c.cfg.PlanHash, round, e.From, c.cfg.Name, e.Ciphertext)
		if err == nil {
			err = sr.client.Receive(j, pt)
		}
		if err != nil {
			return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: fmt.Errorf("share from %q refused: %w", e.From, err)}
		}
	}
	if len(from) != len(sr.members)-1 {
		return nil, &TaskError{Task: "secure_aggregation", Round: round, Err: fmt.Errorf("%d relayed shares for %d other members", len(from), len(sr.members)-1)}
	}
	c.log.Info("secure aggregation: shares exchanged", "round", round, "members", len(sr.members), "threshold", sr.p.Threshold)
	return sr, nil
}

func indexOf(names []string, n string) int {
	for i, x := range names {
		if x == n {
			return i
		}
	}
	return -1
}

// maskedUpload quantises and masks the update and uploads it, then takes
// part in the unmasking.
// With latticeSigma > 0 (DP-FedAvg's local noise under secure
// aggregation) every model coordinate of the quantised update gets an
// independent discrete Gaussian N_Z(0, latticeSigma²) before masking; the
// example count does not.
func (sr *secaggRound) maskedUpload(ctx context.Context, global, local tensor.Weights, n int, clip, latticeSigma float64, metrics map[string]float64, timings *flv1.CollaboratorTimings) error {
	c, round := sr.c, sr.round
	x, err := scheduler.ClientInput(sr.p, global, local, n, clip)
	if err != nil {
		return &TaskError{Task: "secure_aggregation", Round: round, Err: err}
	}
	if latticeSigma > 0 {
		if err := c.noise.AddLattice(x[:len(x)-1], latticeSigma); err != nil {
			return &TaskError{Task: "secure_aggregation", Round: round, Err: err}
		}
		c.log.Info("discrete Gaussian noise added before masking", "round", round, "lattice_sigma", latticeSigma, "frac_bits", sr.p.FracBits)
	}
	y, err := sr.client.Mask(x)
	if err != nil {
		return &TaskError{Task: "secure_aggregation", Round: round, Err: err}
	}
	// The example count travels masked; the header's is 1.
	if err := c.uploadKind(ctx, round, scheduler.MaskedWeights(y), 1, flv1.PayloadKind_PAYLOAD_KIND_MASKED_UPDATE, metrics, timings); err != nil {
		return err
	}
	if c.afterMasked != nil {
		c.afterMasked(round)
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout+c.cfg.SecAggPhaseWait+c.cfg.TransferTimeout)
	um, err := c.cl.SecAggUnmask(cctx, &flv1.SecAggUnmaskRequest{Round: round, Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash})
	cancel()
	if err != nil {
		return err
	}
	ids := func(names []string) ([]int, error) {
		out := make([]int, len(names))
		for i, m := range names {
			if out[i] = indexOf(sr.members, m); out[i] < 0 {
				return nil, fmt.Errorf("unmask names %q, not a member", m)
			}
		}
		return out, nil
	}
	surv, err := ids(um.Survivors)
	if err == nil {
		var dropped []int
		if dropped, err = ids(um.Dropped); err == nil {
			var rv secagg.Reveal
			if rv, err = sr.client.Unmask(surv, dropped); err == nil {
				b := rv.Encode()
				if c.corruptReveal != nil {
					b = c.corruptReveal(b)
				}
				cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
				_, err = c.cl.SecAggReveal(cctx, &flv1.SecAggRevealRequest{Round: round, Sender: c.cfg.Name, PlanHash: c.cfg.PlanHash, Reveal: b})
				cancel()
				if err != nil {
					return err
				}
				c.log.Info("secure aggregation: shares revealed", "round", round, "survivors", len(surv), "dropped", len(dropped))
				return nil
			}
		}
	}
	return &TaskError{Task: "secure_aggregation", Round: round, Err: err}
}

// aggregator side

func (a *Aggregator) secaggOff() error {
	if a.cfg.SecAgg == nil {
		return status.Error(codes.FailedPrecondition, "secure aggregation is off in this federation")
	}
	return nil
}

// SecAggAdvertise implements flv1.AggregatorServer.
func (a *Aggregator) SecAggAdvertise(ctx context.Context, req *flv1.SecAggAdvertiseRequest) (*flv1.SecAggAdvertiseResponse, error) {
	name, err := a.authorize(ctx, "SecAggAdvertise", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return nil, err
	}
	if err := a.secaggOff(); err != nil {
		return nil, err
	}
	kc, err := x509.ParseCertificate(req.GetKeyCert())
	var k SecAggKeys
	if err == nil {
		k, err = ParseSecAggKeys(kc)
	}
	if err == nil && (k.PlanHash != a.cfg.PlanHash || k.Round != req.GetRound()) {
		err = fmt.Errorf("keys for plan %s round %d", ShortHash(k.PlanHash), k.Round)
	}
	if err == nil && kc.Subject.CommonName != name {
		err = fmt.Errorf("key certificate names %q", kc.Subject.CommonName)
	}
	if err == nil && a.cfg.SecAggVerifier != nil {
		var ic *x509.Certificate
		if ic, err = x509.ParseCertificate(req.GetIdentityCert()); err == nil {
			var who *ratls.Identity
			if who, err = a.cfg.SecAggVerifier.VerifyIdentity([]*x509.Certificate{kc, ic}, time.Now()); err == nil && who.Name != name {
				err = fmt.Errorf("key certificate belongs to %q", who.Name)
			}
		}
	}
	if err != nil {
		return nil, refused("secagg", codes.InvalidArgument, "round %d: keys advertised by %q refused: %v", req.GetRound(), name, err)
	}
	members, t, err := a.s.SecAggAdvertise(ctx, name, req.GetRound(), scheduler.SecAggAdvert{KeyCert: req.GetKeyCert(), IdentityCert: req.GetIdentityCert(), MaskKey: k.Mask})
	if err != nil {
		return nil, a.secaggErr(ctx, err)
	}
	resp := &flv1.SecAggAdvertiseResponse{Threshold: int64(t)}
	for _, m := range members {
		resp.Members = append(resp.Members, &flv1.SecAggMember{Name: m.Name, KeyCert: m.KeyCert, IdentityCert: m.IdentityCert})
	}
	return resp, nil
}

func (a *Aggregator) secaggErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return toStatus(err)
}

// SecAggShare implements flv1.AggregatorServer.
func (a *Aggregator) SecAggShare(ctx context.Context, req *flv1.SecAggShareRequest) (*flv1.SecAggShareResponse, error) {
	name, err := a.authorize(ctx, "SecAggShare", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return nil, err
	}
	if err := a.secaggOff(); err != nil {
		return nil, err
	}
	env := make([]scheduler.Envelope, len(req.GetShares()))
	for i, e := range req.GetShares() {
		env[i] = scheduler.Envelope{From: e.GetFrom(), To: e.GetTo(), Ciphertext: e.GetCiphertext()}
	}
	got, err := a.s.SecAggShare(ctx, name, req.GetRound(), env)
	if err != nil {
		return nil, a.secaggErr(ctx, err)
	}
	resp := &flv1.SecAggShareResponse{}
	for _, e := range got {
		resp.Shares = append(resp.Shares, &flv1.SecAggEnvelope{From: e.From, To: e.To, Ciphertext: e.Ciphertext})
	}
	return resp, nil
}

// SecAggUnmask implements flv1.AggregatorServer.
func (a *Aggregator) SecAggUnmask(ctx context.Context, req *flv1.SecAggUnmaskRequest) (*flv1.SecAggUnmaskResponse, error) {
	name, err := a.authorize(ctx, "SecAggUnmask", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return nil, err
	}
	if err := a.secaggOff(); err != nil {
		return nil, err
	}
	surv, dropped, err := a.s.SecAggUnmask(ctx, name, req.GetRound())
	if err != nil {
		return nil, a.secaggErr(ctx, err)
	}
	return &flv1.SecAggUnmaskResponse{Survivors: surv, Dropped: dropped}, nil
}

// SecAggReveal implements flv1.AggregatorServer.
func (a *Aggregator) SecAggReveal(ctx context.Context, req *flv1.SecAggRevealRequest) (*flv1.SecAggRevealAck, error) {
	name, err := a.authorize(ctx, "SecAggReveal", req.GetSender(), req.GetPlanHash())
	if err != nil {
		return nil, err
	}
	if err := a.secaggOff(); err != nil {
		return nil, err
	}
	if err := a.s.SecAggReveal(name, req.GetRound(), req.GetReveal()); err != nil {
		return nil, a.secaggErr(ctx, err)
	}
	return &flv1.SecAggRevealAck{}, nil
}
