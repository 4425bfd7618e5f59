package encrypted

import (
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/party/partysim"
)

// The quickstart key's release policy names exactly the given members (no
// role grant, so the broker's administrator and any other member are
// refused) and the quickstart's simulated measurement, and says it is
// simulated.
func TestReleasePolicyFor(t *testing.T) {
	src := ReleasePolicyFor(KeyID, []string{"aggregator", "col-1", "col-2"})
	rp, err := kms.ParseReleasePolicy(src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rp.Members, []string{"aggregator", "col-1", "col-2"}) || len(rp.Roles) != 0 {
		t.Fatalf("members %v roles %v", rp.Members, rp.Roles)
	}
	if !rp.Simulated() || !strings.Contains(src, "SIMULATION") {
		t.Error("release policy does not say it accepts simulation")
	}
	for _, role := range []string{"aggregator", "collaborator"} {
		if mr, _ := partysim.MeasurementHex(role); !strings.Contains(src, mr) {
			t.Errorf("release policy lacks the simulated %s measurement", role)
		}
	}
	if mr, _ := partysim.MeasurementHex("kms"); strings.Contains(src, mr) {
		t.Error("release policy admits the broker's measurement")
	}
}
