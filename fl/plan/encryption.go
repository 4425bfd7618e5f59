package plan

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/pki"
)

// Encryption is the optional encryption section: data at rest.
//
//	encryption:
//	  key: fl-data        # key broker key ID (member-name rules: 1-64 letters, digits, '.', '_', '-')
//
// With the section, every collaborator's data file must be sealed (a
// sealed CSV or encrypted Parquet; a plaintext file is refused) and the
// aggregator writes its best and last models and its checkpoint sealed
// under data keys of this key. Data keys come from the key broker named in
// each party's party/<name>.yaml (kms section), which releases them only to
// members its release policy admits, after attestation. The plan names the
// key, not the broker: which broker a party trusts is a local decision, like
// its evidence platform. A plan without the section hashes as before the
// section existed.
type Encryption struct {
	// Key is the key broker key ID; "" when the section is absent.
	Key string
}

// Enabled reports whether the plan has an encryption section.
func (e *Encryption) Enabled() bool { return e.Key != "" }

func (ps *parser) encryption(key string, v *yaml.Node) error {
	e := &ps.p.Encryption
	if err := ps.mapping(v, key, []field{{"key", true, ps.str(&e.Key)}}); err != nil {
		return err
	}
	if err := checkKeyID(e.Key); err != nil {
		return ps.errf(v, key+".key", "%w", err)
	}
	return nil
}

// validateEncryption checks a programmatically built section (Parse
// checks parsed ones).
func (p *Plan) validateEncryption() error {
	if !p.Encryption.Enabled() {
		return nil
	}
	if err := checkKeyID(p.Encryption.Key); err != nil {
		return p.errf("encryption.key", "%w", err)
	}
	return nil
}

// canonicalEncryption appends the section to the canonical encoding, only
// when present, so that plans without it keep their hash.
func (p *Plan) canonicalEncryption(w func(indent int, key, value string), q func(string) string) {
	if !p.Encryption.Enabled() {
		return
	}
	w(0, "encryption", "")
	w(1, "key", q(p.Encryption.Key))
}

// checkKeyID applies the key broker's key ID rules (those of member names,
// kms.CheckKeyID), so a plan cannot name a key the broker could not hold.
func checkKeyID(id string) error {
	if err := pki.CheckName(id); err != nil {
		return errorString(strings.Replace(err.Error(), "member name", "key ID", 1))
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }
