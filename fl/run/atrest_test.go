package run

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/fl/protocol"
	"github.com/teeml/teeml/fl/strategy"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/tensor"
	"github.com/teeml/teeml/sealed"
)

func testKeys(t *testing.T, id string) *sealed.LocalKeys {
	t.Helper()
	k := make([]byte, sealed.DataKeySize)
	rand.Read(k)
	ks, err := sealed.NewLocalKeys(map[string][]byte{id: k})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestAtRestCheckpointAndModels writes the aggregator's checkpoint and
// model sealed under a plan's encryption key and reads the checkpoint back
// (as on resume) through the key source; plaintext files are refused under
// encryption, sealed ones without it, and the wrong keys fail.
func TestAtRestCheckpointAndModels(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := tensor.Weights{{Name: "dense/w", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}}
	fa, err := strategy.New("fedavg", strategy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := fa.State()
	if err != nil {
		t.Fatal(err)
	}
	const hash = "ab12"
	c := &protocol.Checkpoint{PlanHash: hash, Round: 1, Rounds: 3, Global: w, Strategy: st, History: []protocol.RoundSummary{{Round: 1}}}
	p := &plan.Plan{Encryption: plan.Encryption{Key: "fl-data"}}
	ks := testKeys(t, "fl-data")
	rest := newAtRest(ctx, p, ks)
	ckpt := filepath.Join(dir, "state", "checkpoint.safetensors")
	os.MkdirAll(filepath.Dir(ckpt), 0o700)
	if err := rest.writeCheckpoint(ckpt, c); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "save", "last.safetensors")
	if err := rest.saveWeights(model, w, map[string]string{"k": "v"}, ml.Metrics{Accuracy: 0.5}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ckpt, model} {
		b, _ := os.ReadFile(f)
		if !bytes.HasPrefix(b, []byte(sealed.Magic)) || bytes.Contains(b, []byte("dense/w")) {
			t.Fatalf("%s is not sealed", f)
		}
	}
	got, err := rest.readCheckpoint(ckpt, hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.Round != 1 || got.Global[0].Data[3] != 4 {
		t.Fatalf("checkpoint read back: round %d, %v", got.Round, got.Global[0].Data)
	}
	gw, md, err := rest.readWeights(model)
	if err != nil || gw[0].Data[2] != 3 || md["k"] != "v" {
		t.Fatalf("model read back: %v %v %v", gw, md, err)
	}
	if _, err := rest.readCheckpoint(ckpt, "other"); err == nil || !strings.Contains(err.Error(), "belongs to plan") {
		t.Errorf("checkpoint of another plan: %v", err)
	}
	if _, err := newAtRest(ctx, p, testKeys(t, "fl-data")).readCheckpoint(ckpt, hash); err == nil || !strings.Contains(err.Error(), "does not authenticate") {
		t.Errorf("wrong keys: %v", err)
	}
	// No encryption section: the sealed checkpoint is refused, not parsed.
	var plain *atRest
	if _, err := plain.readCheckpoint(ckpt, hash); err == nil || !strings.Contains(err.Error(), "is sealed, but the plan has no encryption section") {
		t.Errorf("sealed checkpoint without encryption: %v", err)
	}
	// A plaintext checkpoint under encryption is refused.
	if err := plain.writeCheckpoint(ckpt, c); err != nil {
		t.Fatal(err)
	}
	if _, err := rest.readCheckpoint(ckpt, hash); err == nil || !strings.Contains(err.Error(), "is plaintext, but the plan requires encryption (encryption.key fl-data)") {
		t.Errorf("plaintext checkpoint under encryption: %v", err)
	}
	if _, err := plain.readCheckpoint(ckpt, hash); err != nil {
		t.Errorf("plaintext checkpoint without encryption: %v", err)
	}
	if _, err := rest.readCheckpoint(filepath.Join(dir, "none"), hash); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing checkpoint: %v, want ErrNotExist", err)
	}
	if err := checkEncryptionSupported(&plan.Plan{Encryption: plan.Encryption{Key: "k"}, TaskRunner: plan.TaskRunner{Model: plan.ModelExternal}}); err == nil {
		t.Error("encryption with an external runner accepted")
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
