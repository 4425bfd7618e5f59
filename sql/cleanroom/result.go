package cleanroom

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/sql/engine"
)

// Release is a result as a recipient receives it.
type Release struct {
	Contract       string      `json:"contract"`
	ContractSHA256 string      `json:"contract_sha256"`
	Template       string      `json:"template"`
	Query          string      `json:"query"` // the bound query's canonical form
	QueryID        string      `json:"query_id"`
	Recipient      string      `json:"recipient"`
	Columns        []string    `json:"columns"`
	Rows           [][]*string `json:"rows"` // null: SQL NULL
	Suppressed     int         `json:"suppressed_groups"`
	MinGroupSize   int         `json:"min_group_size"`
	Noised         []string    `json:"noised,omitempty"`
	Epsilon        float64     `json:"epsilon,omitempty"`
	// Model is a training template's model file (LightGBM text), the only
	// thing such a template releases.
	Model []byte `json:"model,omitempty"`
}

// NewRelease describes res for recipient.
func NewRelease(c *contract.Contract, q *contract.Bound, queryID, recipient string, res *Result) *Release {
	r := &Release{Contract: c.Name, ContractSHA256: c.SHA256, Template: q.Template.Name, Query: string(q.Canonical()),
		QueryID: queryID, Recipient: recipient, Columns: res.Columns, Rows: [][]*string{}, Suppressed: res.Suppressed,
		MinGroupSize: c.MinGroupSize, Noised: res.Noised, Epsilon: res.Epsilon, Model: res.Model}
	for _, row := range res.Rows {
		out := make([]*string, len(row))
		for i, v := range row {
			if !v.Null {
				s := v.Text
				out[i] = &s
			}
		}
		r.Rows = append(r.Rows, out)
	}
	return r
}

// Values returns the rows as engine values.
func (r *Release) Values() [][]engine.Value {
	out := make([][]engine.Value, len(r.Rows))
	for i, row := range r.Rows {
		out[i] = make([]engine.Value, len(row))
		for j, v := range row {
			if v == nil {
				out[i][j] = engine.Value{Null: true}
			} else {
				out[i][j] = engine.Value{Text: *v}
			}
		}
	}
	return out
}

// resultMagic starts a sealed result file.
const resultMagic = "TEEMLCR1"

// HPKE suite: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// info binds a sealed result to its contract and recipient.
func info(contractSHA256, recipient string) []byte {
	return []byte("teeml cleanroom result v1\ncontract " + contractSHA256 + "\nrecipient " + recipient)
}

// Seal encrypts r to the recipient's public key (HPKE, RFC 9180).
func Seal(r *Release, pub *ecdh.PublicKey) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: result: %w", err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: recipient %s: %w", r.Recipient, err)
	}
	kdf, aead := suite()
	ct, err := hpke.Seal(pk, kdf, aead, info(r.ContractSHA256, r.Recipient), body)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: sealing the result for %s: %w", r.Recipient, err)
	}
	return append([]byte(resultMagic), ct...), nil
}

// ErrNotForYou: the sealed result does not open with this key for this
// contract and recipient (another recipient's file, another contract, or
// a changed byte).
var ErrNotForYou = errors.New("does not open with this key for this contract and recipient (another recipient's or contract's result, or damaged)")

// Open decrypts a sealed result for recipient under the contract with
// hash contractSHA256.
func Open(b []byte, priv *ecdh.PrivateKey, contractSHA256, recipient string) (*Release, error) {
	if !bytes.HasPrefix(b, []byte(resultMagic)) {
		return nil, errors.New("cleanroom result: not a sealed clean-room result (bad magic)")
	}
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("cleanroom result: %w", err)
	}
	kdf, aead := suite()
	body, err := hpke.Open(sk, kdf, aead, info(contractSHA256, recipient), b[len(resultMagic):])
	if err != nil {
		return nil, fmt.Errorf("cleanroom result: %w", ErrNotForYou)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r Release
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("cleanroom result: %w", err)
	}
	if r.ContractSHA256 != contractSHA256 || r.Recipient != recipient {
		return nil, fmt.Errorf("cleanroom result: %w", ErrNotForYou)
	}
	return &r, nil
}

// WriteFile writes b to path atomically (temporary file, fsync, rename).
func WriteFile(path string, b []byte) error {
	if err := atomicfile.WriteBytes(path, b, 0o600); err != nil {
		return fmt.Errorf("cleanroom: %w", err)
	}
	return nil
}
