package run

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/vfl/psi"
)

// RunPSI refuses bad options and policies before touching the ID file or
// the network.
func TestRunPSIRefusesBeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies", "vfl.yaml")
	os.MkdirAll(filepath.Dir(pol), 0o755)
	os.WriteFile(pol, []byte("roles:\n  leader:\n    sgx:\n      - mr_signer: \""+strings.Repeat("ab", 32)+"\"\n"), 0o644)
	base := PSIOptions{Workspace: dir, Name: "bank", Role: psi.Leader, IDs: filepath.Join(dir, "none.ids"), Out: filepath.Join(dir, "out"), Listen: "127.0.0.1:0"}
	for _, c := range []struct {
		name string
		edit func(*PSIOptions)
		want string
		is   error
	}{
		{"neither peer nor listen", func(o *PSIOptions) { o.Listen = "" }, "give exactly one of a peer to dial and an address to listen on", nil},
		{"both", func(o *PSIOptions) { o.Peer = "x:1" }, "give exactly one", nil},
		{"no policy file", func(o *PSIOptions) { o.Policy = "policies/missing.yaml" }, "vfl psi: policy: open " + filepath.Join(dir, "policies", "missing.yaml"), fs.ErrNotExist},
		{"no peer role", func(o *PSIOptions) { o.Policy = "policies/vfl.yaml" }, "vfl psi: policy " + pol + " has no roles.follower entry for the peer", nil},
		{"bad policy", func(o *PSIOptions) {
			o.Policy = pol
			o.Role = psi.Follower
			os.WriteFile(pol, []byte("roles: {}\n"), 0o644)
		}, pol + ":1: roles: no roles", nil},
	} {
		o := base
		c.edit(&o)
		_, err := RunPSI(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := os.Stat(base.Out); err == nil {
		t.Fatal("output written")
	}
}
