package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	flencrypted "github.com/teeml/teeml/fl/encrypted"
	flrun "github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/fl/workspace"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/sealed"
)

// TestQuickstartEncrypted runs `teeml quickstart --encrypted` (small) and
// then scans every file of the workspace: no file holds a row of any
// collaborator's shard or a plaintext safetensors model, every model and
// checkpoint file is sealed, the broker released data keys only to the
// federation's members and its audit chain verifies. Then a collaborator
// whose shard is sealed under a key whose release policy does not name it
// cannot read it: one line naming the broker's refusal, which is audited.
func TestQuickstartEncrypted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a full federation and a key broker")
	}
	bin := buildTeeml(t)
	dir := filepath.Join(t.TempDir(), "ws")
	out, errOut, code := run(t, bin, "quickstart", "--encrypted", "--dir", dir, "--rounds", "2", "--epochs", "1", "--collaborators", "2", "--timeout", "120s", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("quickstart --encrypted exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("output:\n%s", out)
	m := regexp.MustCompile(`(?m)^final accuracy: ([0-9.]+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no final accuracy line")
	}
	if acc, _ := strconv.ParseFloat(m[1], 64); acc < 0.2 {
		t.Fatalf("final accuracy %s: not learning (chance is 0.1)", m[1])
	}
	for _, want := range []string{"SIMULATED root key", `data keys of "fl-data" were released to: aggregator, col-1, col-2`, "audit chain OK", "sealed final model: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The audit table: key releases only to the members, no refusal.
	rows := regexp.MustCompile(`(?m)^\s+\d+\s+(\S+)\s+(\S+)\s+(generate-data-key|unwrap)\s+(\S+)\s+(granted|refused)\s`).FindAllStringSubmatch(out, -1)
	if len(rows) < 5 {
		t.Fatalf("audit table has %d key releases, want ≥ 5 (2 shards sealed, 2 read, models)", len(rows))
	}
	members := map[string]bool{"aggregator": true, "col-1": true, "col-2": true}
	seen := map[string]bool{}
	for _, r := range rows {
		if !members[r[1]] || r[4] != "fl-data" || r[5] != "granted" {
			t.Errorf("audit row %q: want a granted release of fl-data to a federation member", r[0])
		}
		seen[r[1]+" "+r[3]] = true
	}
	for _, want := range []string{"col-1 generate-data-key", "col-1 unwrap", "col-2 unwrap", "aggregator generate-data-key"} {
		if !seen[want] {
			t.Errorf("audit log lacks %s", want)
		}
	}

	// Plaintext that must not be on disk: rows of every shard, recomputed.
	p, err := workspace.LoadPlan(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := datasets.LoadSplit(p.DataLoader.Dataset, p.DataLoader.TestFraction, p.DataLoader.Seed)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := workspace.Partition(p, raw)
	if err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	for _, part := range parts {
		var b bytes.Buffer
		if err := workspace.WriteShardCSV(&b, part); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		for _, i := range []int{1, len(lines) / 2, len(lines) - 1} {
			if len(lines[i]) < 40 {
				t.Fatalf("row %q too short to be distinctive", lines[i])
			}
			secrets = append(secrets, []byte(lines[i]))
		}
	}
	// A plaintext safetensors file has a JSON header with data_offsets.
	safetensorsMarks := [][]byte{[]byte(`"data_offsets"`), []byte(`"dtype"`)}
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(dir, path)
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("%s holds a plaintext shard row", rel)
				break
			}
		}
		for _, s := range safetensorsMarks {
			if bytes.Contains(b, s) {
				t.Errorf("%s holds a plaintext safetensors header (%s)", rel, s)
			}
		}
		if strings.HasSuffix(path, ".safetensors") || strings.HasSuffix(path, ".sealed") {
			if !bytes.HasPrefix(b, []byte(sealed.Magic)) {
				t.Errorf("%s does not start with the sealed magic", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"save/last.safetensors", "save/best.safetensors", "save/init.safetensors", "data/col-1.csv.sealed"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("expected sealed file: %v", err)
		}
	}
	ckpt, _ := filepath.Glob(filepath.Join(dir, "runs", "*", "state", "checkpoint.safetensors"))
	if len(ckpt) != 1 {
		t.Errorf("checkpoint files %v, want one", ckpt)
	}
	if !t.Failed() {
		t.Logf("scanned %d files: no plaintext shard rows, no plaintext safetensors", files)
	}

	// The broker's store verifies offline too.
	if out, errOut, code := run(t, bin, "kms", "audit", "verify", "--local", "--config", filepath.Join(dir, flencrypted.BrokerConfigFile)); code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("offline audit verify: exit %d %s %s", code, out, errOut)
	}

	// A sealed model without the broker's key is refused with a clear error.
	model := filepath.Join(dir, "save", "last.safetensors")
	if _, errOut, code := run(t, bin, "eval", "--weights", model, "--dataset", "digits"); code != 1 || !strings.Contains(errOut, `sealed (key "fl-data"): give --kms CONFIG`) {
		t.Errorf("eval of a sealed model without --kms: exit %d %s", code, errOut)
	}

	// Refusal: col-1's shard re-sealed under a key only the administrator
	// may use; col-1 cannot read it.
	startBroker(t, bin, filepath.Join(dir, flencrypted.BrokerConfigFile))
	if out, errOut, code := run(t, bin, "eval", "--kms", filepath.Join(dir, flencrypted.AggregatorConfigFile), "--weights", model, "--dataset", "digits"); code != 0 || !strings.Contains(out, "accuracy") {
		t.Errorf("eval --kms of the sealed model: exit %d %s %s", code, out, errOut)
	}
	// Resume: a restarted aggregator reads its sealed checkpoint back
	// through the broker (all rounds done: it rewrites the final models,
	// sealed, with the same accuracy).
	out, errOut, code = run(t, bin, "fl", "aggregator", "start", "-w", dir, "--log-level", "error")
	if code != 0 || !strings.Contains(out, "resuming from checkpoint: round 2 of 2 completed") || !strings.Contains(out, flrun.FinalAccuracyPrefix+m[1]) {
		t.Fatalf("aggregator restart on the sealed checkpoint: exit %d\n%s%s", code, out, errOut)
	}
	if b, _ := os.ReadFile(model); !bytes.HasPrefix(b, []byte(sealed.Magic)) {
		t.Error("the restarted aggregator wrote a plaintext model")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := flencrypted.Admin(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.CreateKey(ctx, &kmsv1.CreateKeyRequest{KeyId: "other", ReleasePolicy: flencrypted.ReleasePolicyFor("other", []string{flrun.BrokerAdminMember})}); err != nil {
		t.Fatal(err)
	}
	if err := flencrypted.SealShard(ctx, dir, flrun.BrokerAdminMember, "aggregator", "other", "col-1", parts[0]); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = run(t, bin, "fl", "collaborator", "start", "-w", dir, "-n", "col-1", "--log-level", "error")
	last := strings.TrimSpace(errOut[strings.LastIndex(strings.TrimRight(errOut, "\n"), "\n")+1:])
	if code != 1 || !strings.HasPrefix(last, "teeml: ") || !strings.Contains(last, "data/col-1.csv.sealed") ||
		!strings.Contains(last, "refused") || !strings.Contains(last, `member "col-1" (role collaborator) is not allowed`) {
		t.Fatalf("col-1 reading a shard under a key not released to it: exit %d, last line %q", code, last)
	}
	if out, errOut, code := run(t, bin, "kms", "audit", "show", "--config", filepath.Join(dir, flencrypted.AdminConfigFile)); code != 0 || !strings.Contains(out, "refused unwrap col-1 key=other") {
		t.Fatalf("audit show lacks col-1's refusal: exit %d\n%s%s", code, out, errOut)
	}
}
