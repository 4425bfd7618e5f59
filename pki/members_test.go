package pki

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodMembers = `federation: acme
members:
  - name: col-1
    role: collaborator
    serial: 4a1f
    status: active
    certified_at: 2026-03-02T10:00:00Z
    not_after: 2026-04-01T10:00:00Z
    evidence:
      tee: sgx
      simulated: true
      debug: false
      measurement: 5eed
      tcb_status: Unknown
      key_sha256: ab
      policy: accepted
  - name: col-1
    role: collaborator
    serial: 4a20
    status: revoked
    certified_at: 2026-03-01T10:00:00Z
    not_after: 2026-04-01T10:00:00Z
    revoked_at: 2026-03-02T09:00:00+01:00
    revocation_reason: keyCompromise
    evidence: {tee: sgx}
`

func TestParseMembers(t *testing.T) {
	m, err := ParseMembers([]byte(goodMembers), "members.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Members) != 2 || m.Active("col-1").Serial != "4a1f" || m.BySerial("4a20").Status != Revoked ||
		m.Members[1].RevokedAt.Location().String() != "UTC" || m.Members[1].RevokedAt.Hour() != 8 {
		t.Fatalf("members %+v", m)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), membersHeader) {
		t.Errorf("no header:\n%s", b)
	}
	m2, err := ParseMembers(b, "")
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := m2.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", b, b2)
	}

	bad := func(from, to string) []byte { return []byte(strings.Replace(goodMembers, from, to, 1)) }
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty":          {nil, "members.yaml: empty"},
		"unknown key":    {bad("    status: active", "    status: active\n    admin: true"), "field admin not found"},
		"duplicate key":  {bad("    status: active", "    status: active\n    status: revoked"), `"status" already defined`},
		"two documents":  {append([]byte(goodMembers), "---\nfederation: x\n"...), "more than one YAML document"},
		"no federation":  {bad("federation: acme", "federation: ''"), "missing federation name"},
		"bad role":       {bad("role: collaborator", "role: root"), `member 0 ("col-1"): unknown role "root"`},
		"bad name":       {bad("name: col-1", "name: 'col 1'"), `member name "col 1"`},
		"bad serial":     {bad("serial: 4a1f", "serial: 04A1F"), `serial "04A1F"`},
		"zero serial":    {bad("serial: 4a1f", "serial: '0'"), `serial "0"`},
		"dup serial":     {bad("serial: 4a20", "serial: 4a1f"), "serial 4a1f already used by member 0"},
		"two active":     {bad("status: revoked", "status: active"), "active member has revoked_at"},
		"bad status":     {bad("status: active", "status: suspended"), `status "suspended"`},
		"no dates":       {bad("    certified_at: 2026-03-02T10:00:00Z\n", ""), "certified_at and not_after are required"},
		"backwards":      {bad("not_after: 2026-04-01", "not_after: 2026-01-01"), "not_after is not after certified_at"},
		"no revoked_at":  {bad("    revoked_at: 2026-03-02T09:00:00+01:00\n", ""), "revoked member has no revoked_at"},
		"not a mapping":  {[]byte("- 1\n"), "cannot unmarshal"},
		"members scalar": {[]byte("federation: a\nmembers: 3\n"), "cannot unmarshal"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseMembers(tc.data, "members.yaml")
			wantErr(t, err, "pki: members.yaml: ", tc.want)
		})
	}
	// Two active entries for one name.
	twoActive := strings.Replace(strings.Replace(goodMembers, "status: revoked", "status: active", 1),
		"    revoked_at: 2026-03-02T09:00:00+01:00\n    revocation_reason: keyCompromise\n", "", 1)
	_, err = ParseMembers([]byte(twoActive), "m")
	wantErr(t, err, `member 1 ("col-1"): name already active as member 0`)

	p := filepath.Join(t.TempDir(), "members.yaml")
	if err := os.WriteFile(p, []byte(goodMembers), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMembers(p); err != nil {
		t.Fatal(err)
	}
	_, err = LoadMembers(p + ".missing")
	wantErr(t, err, "members.yaml.missing")
}

// FuzzLoadMembers: the members parser never panics, and what it accepts
// re-encodes to a stable form that it accepts again.
func FuzzLoadMembers(f *testing.F) {
	f.Add([]byte(goodMembers))
	f.Add([]byte("federation: acme\nmembers: []\n"))
	f.Add([]byte("federation: acme\nmembers:\n  - {name: a, role: kms, serial: '1', status: active, certified_at: 2026-01-01T00:00:00Z, not_after: 2027-01-01T00:00:00Z}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMembers(data, "fuzz")
		if err != nil {
			if m != nil {
				t.Fatal("members returned with an error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseMembers(b, "re-encoded")
		if err != nil {
			t.Fatalf("re-encoded members refused: %v\n%s", err, b)
		}
		b2, err := m2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("encoding not stable:\n%s\n---\n%s", b, b2)
		}
	})
}
