// Package ear writes and reads EAT Attestation Results (EAR,
// draft-ietf-rats-ear): the signed outcome of an appraisal, for relying
// parties that trust the verifier rather than appraise evidence themselves.
//
// teeml's EAR is a JWT (RFC 7519) signed ES256 whose claims set is the
// profile "tag:github.com,2023:veraison/ear" (the claim names of the draft
// and of Veraison's implementations):
//
//	{
//	  "eat_profile": "tag:github.com,2023:veraison/ear",
//	  "iat": 1765113600, "exp": 1765114200,          // exp: teeml's validity window
//	  "eat_nonce": "…",                               // optional, the relying party's nonce
//	  "ear.verifier-id": {"developer": "https://github.com/teeml/teeml", "build": "teeml …"},
//	  "ear.raw-evidence": "<base64url>",              // optional
//	  "submods": {
//	    "sgx": {
//	      "ear.status": "affirming",                  // affirming, warning, contraindicated, none
//	      "ear.trustworthiness-vector": {"instance-identity": 2, "configuration": 2, …},
//	      "ear.appraisal-policy-id": "teeml:policy:sha256:…",
//	      "teeml.tee": "sgx", "teeml.simulated": false, "teeml.tcb-status": "UpToDate",
//	      "teeml.advisory-ids": [], "teeml.report-data": "<hex>",
//	      "teeml.measurements": {"mr-enclave": "…", "mr-signer": "…", …},
//	      "teeml.policy": {"applied": true, "accepted": true, "role": "…", "summary": "…"}
//	    }
//	  }
//	}
//
// Claims named teeml.* are teeml's private namespace: the verified
// measurements and TCB status, the simulation flag and the policy
// decision, so that a relying party can apply its own measurement policy
// to the result (the key broker does: kms accept_ear).
//
// Verify checks a token strictly: three base64url parts without padding,
// header alg pinned to ES256 (no "none", no HMAC, no crit), a signature by
// one of the trusted keys, the profile, iat present and not in the future,
// exp (when present) not passed, an optional maximum age and nonce, and
// every submod's ear.status a known tier. Claims names are unique (a
// duplicate key refuses the token).
package ear

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"
)

// Profile is the EAT profile of the results this package writes and reads.
const Profile = "tag:github.com,2023:veraison/ear"

// MaxTokenSize bounds a token (raw evidence included).
const MaxTokenSize = 1 << 20

// Errors a token is refused with; each error wraps one of them.
var (
	ErrMalformed = errors.New("malformed token")
	ErrAlgorithm = errors.New("algorithm refused")
	ErrSignature = errors.New("signature not by a trusted verifier key")
	ErrProfile   = errors.New("wrong eat_profile")
	ErrStale     = errors.New("not fresh")
	ErrNonce     = errors.New("nonce mismatch")
)

// Status is an AR4SI trust tier, as ear.status names it.
type Status string

const (
	None            Status = "none"
	Affirming       Status = "affirming"
	Warning         Status = "warning"
	Contraindicated Status = "contraindicated"
)

func (s Status) rank() int {
	switch s {
	case Affirming:
		return 1
	case Warning:
		return 2
	case Contraindicated:
		return 3
	}
	return 0
}

// Tier is the trust tier of an AR4SI trustworthiness claim value
// (draft-ietf-rats-ar4si §2.3: -1..1 none, 2..31 and -2..-32 affirming,
// 32..95 and -33..-96 warning, 96..127 and -97..-128 contraindicated).
func Tier(v int8) Status {
	switch {
	case v >= -1 && v <= 1:
		return None
	case (v >= 2 && v <= 31) || (v <= -2 && v >= -32):
		return Affirming
	case (v >= 32 && v <= 95) || (v <= -33 && v >= -96):
		return Warning
	}
	return Contraindicated
}

// AR4SI claim values teeml uses (draft-ietf-rats-ar4si §2.3.4).
const (
	NoClaim int8 = 0
	// instance-identity
	TrustworthyInstance   int8 = 2  // recognized and not compromised
	UntrustworthyInstance int8 = 97 // not recognized as genuine (e.g. simulated keys)
	// configuration
	ApprovedConfig    int8 = 2
	UnsafeConfig      int8 = 96 // e.g. a debug enclave, a refused TCB
	UnappraisedConfig int8 = 32 // configuration not appraised (no policy)
	// executables
	ApprovedRuntime     int8 = 2
	UnrecognizedRuntime int8 = 33 // measurements not in the policy
	// hardware
	GenuineHardware      int8 = 2
	UnsafeHardware       int8 = 32 // known vulnerabilities (TCB not up to date)
	UnrecognizedHardware int8 = 97 // not genuine (simulation)
	// runtime-opaque
	EncryptedMemory int8 = 2
	VisibleMemory   int8 = 96 // debug: the host can read memory
)

// TrustVector is the AR4SI trustworthiness vector.
type TrustVector struct {
	InstanceIdentity int8 `json:"instance-identity"`
	Configuration    int8 `json:"configuration"`
	Executables      int8 `json:"executables"`
	FileSystem       int8 `json:"file-system"`
	Hardware         int8 `json:"hardware"`
	RuntimeOpaque    int8 `json:"runtime-opaque"`
	StorageOpaque    int8 `json:"storage-opaque"`
	SourcedData      int8 `json:"sourced-data"`
}

func (tv *TrustVector) values() []int8 {
	return []int8{tv.InstanceIdentity, tv.Configuration, tv.Executables, tv.FileSystem,
		tv.Hardware, tv.RuntimeOpaque, tv.StorageOpaque, tv.SourcedData}
}

// Worst is the lowest tier among the claims made (None if none is).
func (tv *TrustVector) Worst() Status {
	w := None
	for _, v := range tv.values() {
		if t := Tier(v); t.rank() > w.rank() {
			w = t
		}
	}
	return w
}

// VerifierID is ear.verifier-id.
type VerifierID struct {
	Developer string `json:"developer"`
	Build     string `json:"build"`
}

// Measurements are the verified identity fields of the evidence (hex; only
// those of the evidence's TEE are set).
type Measurements struct {
	MREnclave       string   `json:"mr-enclave,omitempty"`
	MRSigner        string   `json:"mr-signer,omitempty"`
	ISVProdID       uint16   `json:"isv-prod-id,omitempty"`
	ISVSVN          uint16   `json:"isv-svn,omitempty"`
	Attributes      string   `json:"attributes,omitempty"`
	MRTD            string   `json:"mr-td,omitempty"`
	RTMR            []string `json:"rtmr,omitempty"`
	MRConfigID      string   `json:"mr-config-id,omitempty"`
	MROwner         string   `json:"mr-owner,omitempty"`
	TDAttributes    string   `json:"td-attributes,omitempty"`
	XFAM            string   `json:"xfam,omitempty"`
	MRServiceTD     string   `json:"mr-service-td,omitempty"`
	TEETCBSVN2      string   `json:"tee-tcb-svn-2,omitempty"`
	Measurement     string   `json:"measurement,omitempty"`
	SNPPolicy       uint64   `json:"snp-policy,omitempty"`
	HostData        string   `json:"host-data,omitempty"`
	SNPCurrentTCB   uint64   `json:"snp-current-tcb,omitempty"`
	SNPCommittedTCB uint64   `json:"snp-committed-tcb,omitempty"`
	FMSPC           string   `json:"fmspc,omitempty"`
	Debug           bool     `json:"debug"`
}

// PolicyDecision is teeml.policy: whether a policy was applied and what it
// decided.
type PolicyDecision struct {
	Applied  bool     `json:"applied"`
	Accepted bool     `json:"accepted"`
	Role     string   `json:"role,omitempty"`
	Summary  string   `json:"summary"`
	Warnings []string `json:"warnings,omitempty"`
}

// Appraisal is one submod's result.
type Appraisal struct {
	Status      Status       `json:"ear.status"`
	TrustVector *TrustVector `json:"ear.trustworthiness-vector,omitempty"`
	PolicyID    string       `json:"ear.appraisal-policy-id,omitempty"`

	TEE          string          `json:"teeml.tee,omitempty"`
	Simulated    bool            `json:"teeml.simulated"`
	TCBStatus    string          `json:"teeml.tcb-status,omitempty"`
	AdvisoryIDs  []string        `json:"teeml.advisory-ids,omitempty"`
	ReportData   string          `json:"teeml.report-data,omitempty"`
	ValidUntil   int64           `json:"teeml.valid-until,omitempty"`
	Measurements *Measurements   `json:"teeml.measurements,omitempty"`
	Policy       *PolicyDecision `json:"teeml.policy,omitempty"`
}

// Result is an EAR claims set.
type Result struct {
	Profile     string                `json:"eat_profile"`
	IssuedAt    int64                 `json:"iat"`
	Expiry      int64                 `json:"exp,omitempty"`
	Nonce       string                `json:"eat_nonce,omitempty"`
	VerifierID  VerifierID            `json:"ear.verifier-id"`
	RawEvidence B64URL                `json:"ear.raw-evidence,omitempty"`
	Submods     map[string]*Appraisal `json:"submods"`
}

// B64URL is bytes as base64url without padding (EAT's JSON encoding of a
// byte string).
type B64URL []byte

// MarshalJSON implements json.Marshaler.
func (b B64URL) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *B64URL) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("ear.raw-evidence: want a base64url string")
	}
	v, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return fmt.Errorf("ear.raw-evidence: not base64url without padding: %v", err)
	}
	*b = v
	return nil
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`))

// Sign serialises r as a JWT signed ES256 with key (P-256).
func Sign(r *Result, key *ecdsa.PrivateKey) (string, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return "", fmt.Errorf("ear: sign: %w: the verifier key must be ECDSA P-256 (ES256)", ErrAlgorithm)
	}
	if err := r.validate(); err != nil {
		return "", fmt.Errorf("ear: sign: %w", err)
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("ear: sign: %w", err)
	}
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	h := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		return "", fmt.Errorf("ear: sign: %w", err)
	}
	sig := make([]byte, 64)
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func (r *Result) validate() error {
	if r.Profile != Profile {
		return fmt.Errorf("%w: %q, want %q", ErrProfile, r.Profile, Profile)
	}
	if r.IssuedAt <= 0 {
		return fmt.Errorf("%w: iat missing", ErrMalformed)
	}
	if r.Expiry != 0 && r.Expiry <= r.IssuedAt {
		return fmt.Errorf("%w: exp %d is not after iat %d", ErrMalformed, r.Expiry, r.IssuedAt)
	}
	if r.VerifierID.Developer == "" || r.VerifierID.Build == "" {
		return fmt.Errorf("%w: ear.verifier-id needs developer and build", ErrMalformed)
	}
	if len(r.Submods) == 0 {
		return fmt.Errorf("%w: submods empty", ErrMalformed)
	}
	for name, a := range r.Submods {
		if a == nil {
			return fmt.Errorf("%w: submod %q is null", ErrMalformed, name)
		}
		if a.Status.rank() == 0 && a.Status != None {
			return fmt.Errorf("%w: submod %q: ear.status %q is not a trust tier (affirming, warning, contraindicated, none)", ErrMalformed, name, a.Status)
		}
	}
	return nil
}

// VerifyOptions say what a relying party requires of a token.
type VerifyOptions struct {
	// Keys are the trusted verifiers' public keys (P-256); at least one.
	Keys []*ecdsa.PublicKey
	// Now is the time to check against (zero: time.Now()).
	Now time.Time
	// MaxAge refuses results issued longer ago (zero: no limit beyond exp).
	MaxAge time.Duration
	// Skew tolerates clocks this far apart for iat in the future and exp
	// (zero: 1 minute).
	Skew time.Duration
	// Nonce, when set, must equal eat_nonce.
	Nonce string
}

// Verify checks token and returns its claims set.
func Verify(token string, o VerifyOptions) (*Result, error) {
	r, err := verify(token, o)
	if err != nil {
		return nil, fmt.Errorf("ear: %w", err)
	}
	return r, nil
}

func verify(token string, o VerifyOptions) (*Result, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(token), MaxTokenSize)
	}
	if len(o.Keys) == 0 {
		return nil, fmt.Errorf("%w: no trusted verifier key configured", ErrSignature)
	}
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: %d dot-separated parts, want 3 (JWS compact serialization)", ErrMalformed, len(parts))
	}
	hdr, err := b64(parts[0], "header")
	if err != nil {
		return nil, err
	}
	if err := checkHeader(hdr); err != nil {
		return nil, err
	}
	sig, err := b64(parts[2], "signature")
	if err != nil {
		return nil, err
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("%w: ES256 signature is %d bytes, want 64", ErrSignature, len(sig))
	}
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	rr, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	ok := false
	for _, k := range o.Keys {
		if k != nil && k.Curve == elliptic.P256() && ecdsa.Verify(k, h[:], rr, ss) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, ErrSignature
	}
	payload, err := b64(parts[1], "payload")
	if err != nil {
		return nil, err
	}
	r, err := Parse(payload)
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	skew := o.Skew
	if skew == 0 {
		skew = time.Minute
	}
	iat := time.Unix(r.IssuedAt, 0)
	if iat.After(now.Add(skew)) {
		return nil, fmt.Errorf("%w: iat %s is in the future (now %s)", ErrStale, iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if o.MaxAge > 0 && now.Sub(iat) > o.MaxAge {
		return nil, fmt.Errorf("%w: issued %s, more than %s before %s", ErrStale, iat.UTC().Format(time.RFC3339), o.MaxAge, now.UTC().Format(time.RFC3339))
	}
	if r.Expiry != 0 {
		if exp := time.Unix(r.Expiry, 0); !now.Before(exp.Add(skew)) {
			return nil, fmt.Errorf("%w: expired at %s", ErrStale, exp.UTC().Format(time.RFC3339))
		}
	}
	if o.Nonce != "" && r.Nonce != o.Nonce {
		return nil, fmt.Errorf("%w: eat_nonce %q, want %q", ErrNonce, r.Nonce, o.Nonce)
	}
	return r, nil
}

func b64(s, what string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64url without padding", ErrMalformed, what)
	}
	return b, nil
}

func checkHeader(hdr []byte) error {
	if err := uniqueKeys(hdr); err != nil {
		return fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &h); err != nil {
		return fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	var alg string
	if raw, ok := h["alg"]; !ok || json.Unmarshal(raw, &alg) != nil {
		return fmt.Errorf("%w: header has no alg", ErrAlgorithm)
	}
	if alg != "ES256" {
		return fmt.Errorf("%w: alg %q, want ES256", ErrAlgorithm, alg)
	}
	if raw, ok := h["typ"]; ok {
		var typ string
		if json.Unmarshal(raw, &typ) != nil || (!strings.EqualFold(typ, "JWT") && !strings.EqualFold(typ, "application/eat+jwt") && !strings.EqualFold(typ, "eat+jwt")) {
			return fmt.Errorf("%w: header typ %s, want JWT", ErrMalformed, raw)
		}
	}
	if _, ok := h["crit"]; ok {
		return fmt.Errorf("%w: header has crit parameters, none are understood", ErrMalformed)
	}
	return nil
}

// Parse decodes and validates an EAR claims set (JSON) without checking a
// signature: use Verify for tokens.
func Parse(payload []byte) (*Result, error) {
	if err := uniqueKeys(payload); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	var r Result
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("%w: claims: %s", ErrMalformed, oneLine(err.Error()))
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// uniqueKeys refuses JSON with a duplicate member name in any object (a
// JWT whose claims could be read two ways) and anything after the value.
func uniqueKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walk(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

func walk(dec *json.Decoder, depth int) error {
	if depth > 32 {
		return errors.New("nested more than 32 levels")
	}
	t, err := dec.Token()
	if err != nil {
		return errors.New("not valid JSON")
	}
	switch t {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return errors.New("not valid JSON")
			}
			ks, _ := k.(string)
			if seen[ks] {
				return fmt.Errorf("duplicate member %q", ks)
			}
			seen[ks] = true
			if err := walk(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return errors.New("not valid JSON")
		}
	case json.Delim('['):
		for dec.More() {
			if err := walk(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return errors.New("not valid JSON")
		}
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
