package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/explain"
	"github.com/teeml/teeml/internal/yamlx"
)

// Status of a member's identity certificate.
type Status string

const (
	Active  Status = "active"
	Revoked Status = "revoked"
)

// Member is one entry of members.yaml: one identity certificate the CA
// issued. A name can appear several times (revoked certificates stay
// listed), but at most once with status active.
type Member struct {
	Name   string `yaml:"name" json:"name"`
	Role   string `yaml:"role" json:"role"`
	Serial string `yaml:"serial" json:"serial"` // identity certificate serial, lower-case hex
	Status Status `yaml:"status" json:"status"`
	// CertifiedAt and NotAfter are the identity certificate's issue time and
	// expiry (UTC, whole seconds).
	CertifiedAt time.Time `yaml:"certified_at" json:"certified_at"`
	NotAfter    time.Time `yaml:"not_after" json:"not_after"`
	// Evidence is what the CA saw when it certified the member.
	Evidence EvidenceSummary `yaml:"evidence" json:"evidence"`
	// RevokedAt and RevocationReason are set when Status is revoked.
	RevokedAt        *time.Time `yaml:"revoked_at,omitempty" json:"revoked_at,omitempty"`
	RevocationReason string     `yaml:"revocation_reason,omitempty" json:"revocation_reason,omitempty"`
}

// EvidenceSummary records the attestation behind a member's certificate.
type EvidenceSummary struct {
	TEE       string `yaml:"tee" json:"tee"`
	Simulated bool   `yaml:"simulated" json:"simulated"`
	Debug     bool   `yaml:"debug" json:"debug"`
	// Measurement is the code identity: SGX MRENCLAVE, TDX MRTD or SEV-SNP
	// measurement (hex).
	Measurement string `yaml:"measurement" json:"measurement"`
	MRSigner    string `yaml:"mr_signer,omitempty" json:"mr_signer,omitempty"` // SGX only
	TCBStatus   string `yaml:"tcb_status" json:"tcb_status"`
	// KeySHA256 is SHA-256 of the identity key's SubjectPublicKeyInfo, the
	// report data the evidence bound.
	KeySHA256 string `yaml:"key_sha256" json:"key_sha256"`
	// Policy is the one-line policy decision, or a statement that none was
	// applied.
	Policy string `yaml:"policy" json:"policy"`
}

// Members is the content of members.yaml.
type Members struct {
	Federation string   `yaml:"federation" json:"federation"`
	Members    []Member `yaml:"members" json:"members"`
}

// membersHeader starts every members.yaml the CA writes.
const membersHeader = "# teeml federation members: written by teeml pki (certify, revoke); do not edit.\n"

// ParseMembers decodes and validates members.yaml; name (a file name, may be
// empty) prefixes errors. Unknown keys, duplicate keys, several documents,
// bad names, roles, serials or statuses, duplicate serials and two active
// entries for one name are refused.
func ParseMembers(data []byte, name string) (*Members, error) {
	where := "members"
	if name != "" {
		where = name
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Members
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("pki: %s: empty", where)
		}
		return nil, fmt.Errorf("pki: %s: %s", where, oneLine(err.Error()))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pki: %s: more than one YAML document", where)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", where, err)
	}
	return &m, nil
}

// LoadMembers reads and validates a members.yaml file.
func LoadMembers(path string) (*Members, error) {
	b, err := yamlx.ReadFile(path, "members file", 0)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return ParseMembers(b, path)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func (m *Members) validate() error {
	if m.Federation == "" {
		return errors.New("missing federation name")
	}
	if err := checkFederationName(m.Federation); err != nil {
		return err
	}
	serials := map[string]int{}
	active := map[string]int{}
	for i := range m.Members {
		e := &m.Members[i]
		if err := e.validate(); err != nil {
			if e.Name != "" {
				return fmt.Errorf("member %d (%q): %w", i, e.Name, err)
			}
			return fmt.Errorf("member %d: %w", i, err)
		}
		if j, dup := serials[e.Serial]; dup {
			return fmt.Errorf("member %d (%q): serial %s already used by member %d", i, e.Name, e.Serial, j)
		}
		serials[e.Serial] = i
		if e.Status == Active {
			if j, dup := active[e.Name]; dup {
				return fmt.Errorf("member %d (%q): name already active as member %d", i, e.Name, j)
			}
			active[e.Name] = i
		}
		e.CertifiedAt = e.CertifiedAt.UTC()
		e.NotAfter = e.NotAfter.UTC()
		if e.RevokedAt != nil {
			t := e.RevokedAt.UTC()
			e.RevokedAt = &t
		}
	}
	return nil
}

func (e *Member) validate() error {
	if err := CheckName(e.Name); err != nil {
		return err
	}
	if err := CheckRole(e.Role); err != nil {
		return err
	}
	if _, err := parseSerial(e.Serial); err != nil {
		return err
	}
	if e.CertifiedAt.IsZero() || e.NotAfter.IsZero() {
		return errors.New("certified_at and not_after are required")
	}
	if !e.NotAfter.After(e.CertifiedAt) {
		return errors.New("not_after is not after certified_at")
	}
	switch e.Status {
	case Active:
		if e.RevokedAt != nil || e.RevocationReason != "" {
			return errors.New("active member has revoked_at or revocation_reason")
		}
	case Revoked:
		if e.RevokedAt == nil || e.RevokedAt.IsZero() {
			return errors.New("revoked member has no revoked_at")
		}
	default:
		return fmt.Errorf("status %q, want active or revoked", e.Status)
	}
	if strings.ContainsAny(e.RevocationReason, "\n\r") {
		return errors.New("revocation_reason spans lines")
	}
	return nil
}

// parseSerial decodes a lower-case hex serial without leading zeros, as
// formatSerial writes it.
func parseSerial(s string) (*big.Int, error) {
	if s == "" || len(s) > 40 {
		return nil, fmt.Errorf("serial %q: want 1 to 40 lower-case hex digits", s)
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 || formatSerial(n) != s {
		return nil, fmt.Errorf("serial %q: want lower-case hex without leading zeros, > 0", s)
	}
	return n, nil
}

func formatSerial(n *big.Int) string { return n.Text(16) }

func checkFederationName(s string) error {
	if err := CheckName(s); err != nil {
		return explain.Errorf(err, "federation name: %s", strings.TrimPrefix(err.Error(), "member name "))
	}
	return nil
}

// Marshal encodes m as members.yaml.
func (m *Members) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(membersHeader)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("pki: members: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("pki: members: %w", err)
	}
	return b.Bytes(), nil
}

// save writes m to path atomically.
func (m *Members) save(path string) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(path, b, 0o644); err != nil {
		return fmt.Errorf("pki: members: %w", err)
	}
	return nil
}

// Active returns the active entry for name, or nil.
func (m *Members) Active(name string) *Member {
	for i := range m.Members {
		if m.Members[i].Name == name && m.Members[i].Status == Active {
			return &m.Members[i]
		}
	}
	return nil
}

// BySerial returns the entry for serial (lower-case hex), or nil.
func (m *Members) BySerial(serial string) *Member {
	for i := range m.Members {
		if m.Members[i].Serial == serial {
			return &m.Members[i]
		}
	}
	return nil
}
