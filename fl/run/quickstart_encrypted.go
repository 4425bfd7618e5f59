package run

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
)

// QuickstartEncryption turns a quickstart into one with data at rest
// encrypted (teeml quickstart --encrypted, package fl/encrypted, which
// owns the key broker; this package cannot import it).
//
// The workspace then also has a key broker member "kms" (role kms) and its
// administrator "kms-admin" (role aggregator) in the federation, the plan
// names KeyID in its encryption section, every collaborator's data is
// data/<name>.csv.sealed instead of shard:N, and every party's
// configuration has a kms section naming the broker at BrokerAddr with
// policies/kms.yaml (the simulated measurement, role kms).
type QuickstartEncryption struct {
	// KeyID is the plan's encryption.key.
	KeyID string
	// Prepare runs once the workspace is set up and before any party
	// starts: it starts the broker, creates the key, seals the data. finish
	// runs after a successful federation; stop always runs at the end.
	Prepare func(ctx context.Context, q *EncryptedWorkspace) (finish func(ctx context.Context, res *QuickstartResult, out io.Writer) error, stop func(), err error)
}

// EncryptedWorkspace is what QuickstartEncryption.Prepare works on.
type EncryptedWorkspace struct {
	Dir           string
	Collaborators []string
	BrokerAddr    string
	Executable    string
	Out           io.Writer
}

// Members of an encrypted quickstart besides the federation's.
const (
	BrokerMember      = "kms"
	BrokerAdminMember = "kms-admin"
	// BrokerPolicyFile is the policy parties hold the broker to (role kms).
	BrokerPolicyFile = "policies/kms.yaml"
)

// EncryptedDataPath is collaborator name's sealed data file in an encrypted
// quickstart (relative to the workspace).
func EncryptedDataPath(name string) string { return "data/" + name + ".csv.sealed" }

// encryptPlan adds the encryption section.
func (e *QuickstartEncryption) encryptPlan(p *plan.Plan) {
	if e != nil {
		p.Encryption.Key = e.KeyID
	}
}

// dataPath is collaborator i's cols.yaml data path.
func (e *QuickstartEncryption) dataPath(name string, i int) string {
	if e == nil {
		return fmt.Sprintf("%s%d", workspace.ShardPrefix, i)
	}
	return EncryptedDataPath(name)
}

// addBroker adds the broker and its administrator to the parties to certify
// and writes the parties' policy for the broker.
func (e *QuickstartEncryption) addBroker(dir string, roles map[string]string, pols map[string]*policy.Policy) (map[string]*policy.Policy, error) {
	if e == nil {
		return pols, nil
	}
	roles[BrokerMember], roles[BrokerAdminMember] = "kms", "aggregator"
	src := partysim.Policy("kms")
	if err := atomicfile.WriteBytes(filepath.Join(dir, filepath.FromSlash(BrokerPolicyFile)), src, 0o644); err != nil {
		return nil, err
	}
	kp, err := policy.Parse(src, BrokerPolicyFile)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(pols)
	out["kms"] = kp
	return out, nil
}

// addKMSSections gives every federation party (not the broker) a kms
// section naming the broker.
func (e *QuickstartEncryption) addKMSSections(dir, brokerAddr string, roles map[string]string) error {
	if e == nil {
		return nil
	}
	for name := range roles {
		if name == BrokerMember {
			continue
		}
		pc, err := party.LoadConfig(party.ConfigFile(dir, name))
		if err != nil {
			return err
		}
		pc.KMS = &party.KMSConfig{Broker: brokerAddr, Policy: BrokerPolicyFile}
		if err := partysim.WriteConfig(dir, name, pc, "Evidence platform and key broker of party "+name+" (see party.Config)."); err != nil {
			return err
		}
	}
	return nil
}
