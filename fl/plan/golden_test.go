package plan_test

import (
	"testing"

	"github.com/teeml/teeml/fl/workspace"
)

// The canonical form, hence every plan hash, is a compatibility promise:
// frozen workspaces, checkpoints and run directories are keyed by it. These
// are the templates' hashes as teeml computed them before the canonical
// writer was split into sections (3845ea4); a change here breaks every
// frozen workspace.
func TestTemplateHashesAreStable(t *testing.T) {
	want := map[string]string{
		"breast_cancer_logreg": "a3e29216ae6d226f45ccd3f2d1d44ce071fcbe67f56d3c68a6b8760e625d39ae",
		"credit_widedeep":      "cd63e02f3f654f0bcd6dc72f7fb55873066d0c5f3d1f87b4eab560e7fcabd6d7",
		"digits_cnn":           "44d1430fb5963646396ec4d92dedc49f352bf1587b4810863da7069fd74b00a5",
		"digits_gbdt":          "46462f7295fd132c6675ca01e444625ce94894b8d5e05b02518580c51266d030",
		"digits_rf":            "f5917842ce8e61d2a0d12b39462e0bcbe646e0ff1c4b0d0e5568d162e2098567",
		"digits_mlp":           "6819772298c31f2a7cc3e89ebd368457c6b3e4788822f551ca7d8da0bd1571ae",
		"digits_torch":         "f807d12c5ad60e104689be874ca850e0806b94d45930c749cbf98c9075d829a5",
		"mnist_cnn":            "f5c035329abb9fec3471c6e6fa42af87e993e92dd39ee1b6f32baa0b83c62573",
	}
	for _, name := range workspace.Templates() {
		got := mustParse(t, template(t, name)).Hash()
		w, ok := want[name]
		if !ok {
			t.Errorf("template %s: hash %s is not pinned", name, got)
			continue
		}
		if got != w {
			t.Errorf("template %s: canonical hash %s, want %s", name, got, w)
		}
	}
}
