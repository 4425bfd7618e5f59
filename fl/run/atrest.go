package run

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/treefed"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/buildinfo"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/ml/safetensors"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/ml/trees"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/sealed"
)

// PartyKeySource returns member name's key broker (the kms section of its
// party configuration), connected with its federation identity of the given
// role, and a close function. It fails if the party has no kms section.
func PartyKeySource(ctx context.Context, ws, name, role string, log *slog.Logger) (sealed.KeySource, func(), error) {
	id, err := loadParty(ws, name, role, log)
	if err != nil {
		return nil, nil, err
	}
	ks, closeKS, ok, err := id.KeySource(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("party config %s: no kms section", party.ConfigFile(ws, name))
	}
	return ks, closeKS, nil
}

// partyKeys returns the key source a party of plan p uses: its broker if
// its configuration has a kms section (nil otherwise). A plan with an
// encryption section requires one.
func partyKeys(ctx context.Context, id *party.Party, p *plan.Plan, log *slog.Logger) (sealed.KeySource, func(), error) {
	ks, closeKS, ok, err := id.KeySource(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		if p.Encryption.Enabled() {
			return nil, nil, fmt.Errorf("plan requires encryption (encryption.key %s) but %s has no kms section naming the key broker", p.Encryption.Key, party.ConfigFile(id.Dir, id.Name))
		}
		return nil, closeKS, nil
	}
	return ks, closeKS, nil
}

// atRest writes and reads the aggregator's model and checkpoint files:
// sealed under data keys of key when the plan has an encryption section
// (ks is then the aggregator's key broker), plaintext otherwise (nil
// atRest). Sealed files keep their names; their content starts with
// sealed.Magic.
type atRest struct {
	ctx context.Context
	ks  sealed.KeySource
	key string
}

func newAtRest(ctx context.Context, p *plan.Plan, ks sealed.KeySource) *atRest {
	if !p.Encryption.Enabled() {
		return nil
	}
	return &atRest{ctx: ctx, ks: ks, key: p.Encryption.Key}
}

// seal writes path atomically (mode 0600), sealing what enc writes when a
// is not nil. The plaintext never reaches the disk.
func (a *atRest) write(path string, enc func(io.Writer) error) error {
	if a == nil {
		return atomicfile.WriteFile(path, 0o600, enc)
	}
	return sealed.WriteFile(a.ctx, path, 0o600, a.ks, a.key, enc)
}

// open returns the contents of path: decrypted if it is sealed. A plaintext
// file is refused when the plan requires encryption, and a sealed one when
// it does not (it cannot be opened without the key broker).
func (a *atRest) open(path, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	isSealed := bytes.HasPrefix(b, []byte(sealed.Magic))
	switch {
	case a == nil && isSealed:
		return nil, fmt.Errorf("%s %s is sealed, but the plan has no encryption section", what, path)
	case a == nil:
		return b, nil
	case !isSealed:
		return nil, fmt.Errorf("%s %s is plaintext, but the plan requires encryption (encryption.key %s)", what, path, a.key)
	}
	r, err := sealed.Open(a.ctx, bytes.NewReader(b), a.ks)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return plain, nil
}

// saveWeights writes a model file (see job.WriteWeights).
func (a *atRest) saveWeights(path string, w tensor.Weights, md map[string]string, met ml.Metrics) error {
	if plan.IsTreeModel(md[workspace.MetaModel]) {
		return a.saveTrees(path, w, md)
	}
	if a == nil {
		return saveWeights(path, w, md, met)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return a.write(path, func(out io.Writer) error { return job.EncodeWeights(out, w, md, met) })
}

// saveTrees writes a tree model's weights as its LightGBM model.txt
// (sealed when a is not nil), its parameters section recording the plan's
// dataset and split so that teeml eval and predict re-create the test rows.
func (a *atRest) saveTrees(path string, w tensor.Weights, md map[string]string) error {
	m, err := treefed.Decode(w, path)
	if err != nil {
		return err
	}
	m.Params = map[string]string{}
	for _, k := range []string{job.MetaDataset, job.MetaSplitSeed, job.MetaTestFraction, workspace.MetaPlanHash} {
		if v := md[k]; v != "" {
			m.Params[k] = v
		}
	}
	m.Params[job.MetaVersion] = buildinfo.Version
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return a.write(path, func(out io.Writer) error { return trees.WriteText(out, m) })
}

// writeCheckpoint is protocol.WriteCheckpoint, sealed when a is not nil.
func (a *atRest) writeCheckpoint(path string, c *protocol.Checkpoint) error {
	if a == nil {
		return protocol.WriteCheckpoint(path, c)
	}
	// Encoded first: EncodeCheckpoint's errors already start with
	// "checkpoint: ", the sealed write's do not.
	var buf bytes.Buffer
	if err := protocol.EncodeCheckpoint(&buf, c); err != nil {
		return err
	}
	if err := a.write(path, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err }); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// readCheckpoint is protocol.ReadCheckpoint, unsealing through the key
// broker when a is not nil.
func (a *atRest) readCheckpoint(path, planHash string) (*protocol.Checkpoint, error) {
	if a == nil {
		b, err := os.ReadFile(path)
		if err == nil && bytes.HasPrefix(b, []byte(sealed.Magic)) {
			return nil, fmt.Errorf("checkpoint %s is sealed, but the plan has no encryption section", path)
		}
		return protocol.ReadCheckpoint(path, planHash)
	}
	b, err := a.open(path, "checkpoint")
	if err != nil {
		return nil, err // a missing file wraps os.ErrNotExist
	}
	return protocol.ParseCheckpoint(path, b, planHash)
}

// readWeights reads the initial weights: sealed or not (initial weights
// are derived from the plan's seed and hold no data, so a plaintext file is
// accepted even under encryption).
func (a *atRest) readWeights(path string) (tensor.Weights, map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if bytes.HasPrefix(b, []byte(sealed.Magic)) {
		if a == nil {
			return nil, nil, fmt.Errorf("%s is sealed, but the plan has no encryption section", path)
		}
		if b, err = a.open(path, "weights"); err != nil {
			return nil, nil, err
		}
	}
	return safetensors.Read(bytes.NewReader(b))
}

// checkEncryptionSupported refuses encryption with an external task runner:
// runners exchange data and weights with teeml through plaintext files.
func checkEncryptionSupported(p *plan.Plan) error {
	if p.Encryption.Enabled() && p.TaskRunner.Model == plan.ModelExternal {
		return fmt.Errorf("plan: encryption with task_runner.model %s is not implemented (the runner exchanges data and weights through plaintext files)", plan.ModelExternal)
	}
	return nil
}
