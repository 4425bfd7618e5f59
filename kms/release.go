package kms

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/ratls"
)

// ReleasePolicy is a key's release policy: who (federation members by name,
// or by role, as verified by the PKI at the RA-TLS handshake) running what
// (an attest/policy role: measurements, TCB statuses, debug, simulation)
// may obtain plaintext data keys of the key. YAML:
//
//	members: [col-1, col-2]     # any of these federation members …
//	roles: [collaborator]       # … or any member with one of these roles
//	attestation:                # the attest/policy role schema (policy.Parse)
//	  sgx:
//	    - mr_enclave: <64 hex>
//	      mr_signer: <64 hex>
//	  tcb_statuses: [UpToDate]
//	  allow_debug: false
//	  allow_simulation: false
//	accept_ear:                 # optional: accept a trusted verifier's EAR
//	  max_age: 10m              # (kms ear.go, AcceptEAR)
//	contracts:                  # optional: clean-room contracts (sha256 hex)
//	  - 3f5a…                   # the key may also be released under
//
// At least one of members, roles and contracts must be given, and
// attestation is required: everything not allowed is refused. A caller that
// is not among members or roles gets the key only through a contract listed
// here: its request names the contract, the broker checks the owners'
// signatures, the caller's attestation against the contract's analytics
// policy, the template and parameters, and the owner's ε budget (see
// cleanroom.go). The connection-level policy
// of the broker (which evidence may connect at all) is checked first by
// RA-TLS; this policy narrows it per key.
type ReleasePolicy struct {
	Members []string
	Roles   []string
	// Contracts are the SHA-256 (hex) of the clean-room contracts the key
	// is bound to.
	Contracts []string
	// Attestation is a one-role attest/policy policy (role releaseRole).
	Attestation *policy.Policy
	// AcceptEAR, when set, lets the key be released on an attestation
	// result from a trusted verifier instead of RA-TLS evidence (ear.go).
	AcceptEAR *AcceptEAR
	// Source is the YAML as given; SHA256 its hash (hex), which audit
	// entries record.
	Source string
	SHA256 string
}

const releaseRole = "release"

// ParseReleasePolicy parses a release policy strictly.
func ParseReleasePolicy(src string) (*ReleasePolicy, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("release policy: "+format, args...)
	}
	if len(src) > yamlx.MaxSize {
		return nil, fail("%d bytes, at most %d", len(src), yamlx.MaxSize)
	}
	dec := yaml.NewDecoder(strings.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail("empty")
		}
		return nil, fail("%s", strings.Join(strings.Fields(err.Error()), " "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fail("more than one YAML document")
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fail("want a mapping with members, roles and attestation")
	}
	root := doc.Content[0]
	rp := &ReleasePolicy{Source: src}
	seen := map[string]bool{}
	var att *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return nil, fail("line %d: duplicate key %q", k.Line, k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "members", "roles":
			var list []string
			if err := v.Decode(&list); err != nil {
				return nil, fail("line %d: %s: want a list of names", k.Line, k.Value)
			}
			for _, n := range list {
				check := pki.CheckName
				if k.Value == "roles" {
					check = pki.CheckRole
				}
				if err := check(n); err != nil {
					return nil, fail("line %d: %s: %v", k.Line, k.Value, err)
				}
			}
			if k.Value == "members" {
				rp.Members = list
			} else {
				rp.Roles = list
			}
		case "attestation":
			att = v
		case "accept_ear":
			a, err := parseAcceptEAR(v)
			if err != nil {
				return nil, fail("line %d: accept_ear: %v", k.Line, err)
			}
			rp.AcceptEAR = a
		case "contracts":
			var list []string
			if err := v.Decode(&list); err != nil {
				return nil, fail("line %d: contracts: want a list of SHA-256 hashes (hex)", k.Line)
			}
			for _, h := range list {
				if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size || h != strings.ToLower(h) {
					return nil, fail("line %d: contracts: %q is not a SHA-256 hash (64 lower-case hex digits)", k.Line, h)
				}
			}
			rp.Contracts = list
		default:
			return nil, fail("line %d: unknown key %q (known: members, roles, attestation, contracts, accept_ear)", k.Line, k.Value)
		}
	}
	if len(rp.Members) == 0 && len(rp.Roles) == 0 && len(rp.Contracts) == 0 {
		return nil, fail("none of members, roles and contracts given: nobody could use the key")
	}
	if att == nil {
		return nil, fail("missing key \"attestation\" (which measurements may receive the key)")
	}
	// Re-use attest/policy's parser and judge: wrap the node as a one-role
	// policy.
	wrapped := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "roles"},
		{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: releaseRole}, att}},
	}}
	b, err := yaml.Marshal(wrapped)
	if err != nil {
		return nil, fail("attestation: %v", err)
	}
	p, err := policy.Parse(b, "release policy attestation")
	if err != nil {
		return nil, err
	}
	rp.Attestation = p
	sum := sha256.Sum256([]byte(src))
	rp.SHA256 = hex.EncodeToString(sum[:])
	return rp, nil
}

// Simulated reports whether the policy accepts simulated evidence.
func (rp *ReleasePolicy) Simulated() bool {
	return rp.Attestation.Roles[releaseRole].AllowSimulation
}

// Judge decides whether the verified peer may receive the key's plaintext.
// It returns nil when allowed, else a one-line reason.
func (rp *ReleasePolicy) Judge(p *ratls.Peer, now time.Time, log *slog.Logger) error {
	if p == nil || p.Identity == nil {
		return errors.New("caller has no verified federation identity")
	}
	name, role := p.Identity.Name, p.Identity.Role
	// The identity and evidence were checked at the handshake; a connection
	// may outlive them, so their expiry is checked again at every release.
	if !p.Identity.NotAfter.IsZero() && now.After(p.Identity.NotAfter) {
		return fmt.Errorf("member %q: identity certificate expired at %s (reconnect with a renewed identity)", name, p.Identity.NotAfter.UTC().Format(time.RFC3339))
	}
	if !rp.allows(name, role) {
		var b bytes.Buffer
		fmt.Fprintf(&b, "member %q (role %s) is not allowed by the key's release policy", name, role)
		if len(rp.Members) > 0 {
			fmt.Fprintf(&b, " (members: %s)", strings.Join(rp.Members, ", "))
		}
		if len(rp.Roles) > 0 {
			fmt.Fprintf(&b, " (roles: %s)", strings.Join(rp.Roles, ", "))
		}
		if len(rp.Contracts) > 0 {
			fmt.Fprintf(&b, "; the key is bound to clean-room contract %s: name it in the request", shortList(rp.Contracts))
		}
		return errors.New(b.String())
	}
	d := rp.Attestation.Evaluate(releaseRole, p.Claims, policy.At(now), policy.Peer(name), policy.Logger(log))
	return d.Err()
}

func parseAcceptEAR(v *yaml.Node) (*AcceptEAR, error) {
	if v.Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping with max_age")
	}
	a := &AcceptEAR{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		switch k.Value {
		case "max_age":
			if a.MaxAge != 0 {
				return nil, errors.New("duplicate key \"max_age\"")
			}
			d, err := time.ParseDuration(val.Value)
			if err != nil || val.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("max_age %q: want a duration such as 10m", val.Value)
			}
			if d <= 0 || d > MaxEARAge {
				return nil, fmt.Errorf("max_age %s: want more than 0 and at most %s", d, MaxEARAge)
			}
			a.MaxAge = d
		default:
			return nil, fmt.Errorf("unknown key %q (known: max_age)", k.Value)
		}
	}
	if a.MaxAge == 0 {
		return nil, errors.New("missing max_age (how old a result may be)")
	}
	return a, nil
}

func (rp *ReleasePolicy) allows(name, role string) bool {
	return slices.Contains(rp.Members, name) || slices.Contains(rp.Roles, role)
}

func shortList(hashes []string) string {
	s := make([]string, len(hashes))
	for i, h := range hashes {
		s[i] = h[:16] + "…"
	}
	return strings.Join(s, ", ")
}
