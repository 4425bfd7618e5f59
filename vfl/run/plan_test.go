package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/vfl/plan"
)

func TestPlanHashCoversPolicies(t *testing.T) {
	dir := t.TempDir()
	planFile, err := SetupSimulated(SetupOptions{Dir: dir, Dataset: "breast_cancer"})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := plan.Load(planFile)
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policies", "follower.yaml")
	b, _ := os.ReadFile(pol)
	os.WriteFile(pol, []byte(strings.Replace(string(b), "allow_debug: false", "allow_debug: true", 1)), 0o644)
	p2, err := plan.Load(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Hash() == p2.Hash() {
		t.Fatal("changing a policy file did not change the plan hash")
	}
	// A comment does not change the plan hash (canonical form).
	pb, _ := os.ReadFile(planFile)
	os.WriteFile(planFile, append([]byte("# another comment\n"), pb...), 0o644)
	p3, err := plan.Load(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Hash() != p2.Hash() {
		t.Fatal("a comment changed the plan hash")
	}
	// A policy without the role it is for is refused.
	os.WriteFile(pol, []byte("roles:\n  leader:\n    sgx:\n      - mr_enclave: \""+strings.Repeat("ab", 32)+"\"\n"), 0o644)
	if _, err := plan.Load(planFile); err == nil || !strings.Contains(err.Error(), `has no role "follower"`) {
		t.Fatalf("err %v", err)
	}
}
