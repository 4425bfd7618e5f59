package plan_test

import (
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/plan"
)

func TestEncryptionSection(t *testing.T) {
	base := string(template(t, "digits_mlp"))
	plainPlan := mustParse(t, []byte(base))
	if plainPlan.Encryption.Enabled() {
		t.Fatal("template has an encryption section")
	}
	// Absent: the canonical form has no encryption key, so existing plan
	// hashes stay what they were.
	if strings.Contains(string(plainPlan.Canonical()), "encryption") {
		t.Fatal("canonical form of a plan without encryption mentions it")
	}
	enc := mustParse(t, []byte(base+"\nencryption:\n  key: fl-data\n"))
	if enc.Encryption.Key != "fl-data" {
		t.Fatalf("encryption.key %q", enc.Encryption.Key)
	}
	if enc.Hash() == plainPlan.Hash() {
		t.Fatal("encryption section does not change the hash")
	}
	again := mustParse(t, enc.Canonical())
	if again.Hash() != enc.Hash() || again.Encryption != enc.Encryption {
		t.Fatal("canonical form does not round-trip the encryption section")
	}
	for _, c := range []struct{ section, want string }{
		{"encryption:\n  key: \"\"\n", "encryption.key"},
		{"encryption:\n  key: \"a b\"\n", "encryption.key"},
		{"encryption:\n  key: k\n  broker: x\n", "encryption.broker"},
		{"encryption: {}\n", "encryption.key"},
		{"encryption:\n  key: 3\n", "must be a string"},
	} {
		_, err := plan.Parse([]byte(base+"\n"+c.section), "plan.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "plan.yaml:") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line plan.yaml:LINE: naming %s", c.section, err, c.want)
		}
	}
}
