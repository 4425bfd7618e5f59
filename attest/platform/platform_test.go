package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/gramine"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/tsm"
)

func TestAutoNeverFallsBackToSimulation(t *testing.T) {
	dir := t.TempDir()
	none := filepath.Join(dir, "none")
	_, err := NewIssuer(Config{GramineRoot: none, TSMRoot: none})
	if err == nil || !strings.Contains(err.Error(), "no TEE found") {
		t.Fatalf("err = %v", err)
	}
	g := filepath.Join(dir, "attestation")
	if err := os.MkdirAll(g, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g, "quote"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(Config{GramineRoot: g, TSMRoot: none})
	if _, ok := iss.(*gramine.Issuer); err != nil || !ok {
		t.Fatalf("with %s/quote: %T, %v", g, iss, err)
	}
	iss, err = NewIssuer(Config{GramineRoot: none, TSMRoot: dir})
	if _, ok := iss.(*tsm.Issuer); err != nil || !ok {
		t.Fatalf("with tsm root: %T, %v", iss, err)
	}
}

func TestSimOnlyByNameAndWithKey(t *testing.T) {
	if _, err := NewIssuer(Config{Platform: Sim}); err == nil {
		t.Fatal("sim without key accepted")
	}
	key, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(Config{Platform: Sim, SimKey: key, SimIdentity: sim.Identity{TEE: attest.SGX}})
	if _, ok := iss.(*sim.Issuer); err != nil || !ok {
		t.Fatalf("%T, %v", iss, err)
	}
	if _, err := NewIssuer(Config{Platform: "sgx-please"}); err == nil || !strings.Contains(err.Error(), "unknown platform") {
		t.Fatalf("err = %v", err)
	}
}
