package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/vfl/join"
	"github.com/teeml/teeml/vfl/psi"
)

// vflWorkspace is a simulated workspace with leader "bank" and follower
// "shop".
func vflWorkspace(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	polBytes := partysim.Policy("leader", "follower")
	polPath := filepath.Join(dir, filepath.FromSlash(DefaultVFLPolicy))
	os.MkdirAll(filepath.Dir(polPath), 0o755)
	if err := os.WriteFile(polPath, polBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(polBytes, polPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := partysim.Federation(context.Background(), dir, "vfl-test",
		map[string]string{"bank": "leader", "shop": "follower"},
		map[string]*policy.Policy{"leader": pol, "follower": pol}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVFLPSITwoProcesses(t *testing.T) {
	bin := buildTeeml(t)
	ws := vflWorkspace(t)
	var lids, fids []string
	for i := range 300 {
		lids = append(lids, fmt.Sprintf("user-%04d", i))
		fids = append(fids, fmt.Sprintf("user-%04d", i+200))
	}
	lids = append(lids, "user-0000") // a duplicate
	os.WriteFile(filepath.Join(ws, "bank.ids"), []byte(strings.Join(lids, "\n")+"\n"), 0o600)
	os.WriteFile(filepath.Join(ws, "shop.ids"), []byte(strings.Join(fids, "\r\n")), 0o600)
	addr := freeAddr(t)
	lead := exec.Command(bin, "vfl", "psi", "-w", ws, "-n", "bank", "--role", "leader", "--ids", filepath.Join(ws, "bank.ids"),
		"-o", filepath.Join(ws, "bank.aligned"), "--listen", addr, "--batch", "64")
	var lo, le bytes.Buffer
	lead.Stdout, lead.Stderr = &lo, &le
	if err := lead.Start(); err != nil {
		t.Fatal(err)
	}
	fo, fe, code := run(t, bin, "vfl", "psi", "-w", ws, "-n", "shop", "--role", "follower", "--ids", filepath.Join(ws, "shop.ids"),
		"-o", filepath.Join(ws, "shop.aligned"), "--peer", addr, "--batch", "50")
	lerr := lead.Wait()
	if code != 0 || lerr != nil {
		t.Fatalf("follower exit %d: %s\n%s\nleader: %v\n%s\n%s", code, fo, fe, lerr, lo.String(), le.String())
	}
	for _, o := range []string{lo.String(), fo} {
		if !strings.Contains(o, "SIMULATION") || !strings.Contains(o, "intersection 100 IDs") {
			t.Fatalf("output lacks the simulation banner or the intersection:\n%s", o)
		}
	}
	if !strings.Contains(lo.String(), "1 duplicates dropped") {
		t.Fatalf("leader output: %s", lo.String())
	}
	if !strings.Contains(le.String(), "psi: own set doubly blinded") {
		t.Fatalf("leader logs lack progress: %s", le.String())
	}
	a, err := join.ReadAligned(filepath.Join(ws, "bank.aligned"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := join.ReadAligned(filepath.Join(ws, "shop.aligned"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) || len(a) != 100 {
		t.Fatalf("aligned files differ or wrong size: %d vs %d", len(a), len(b))
	}
	want := fids[:100]
	if got := slices.Sorted(slices.Values(a)); !slices.Equal(got, want) {
		t.Fatalf("intersection %v, want %v", got[:5], want[:5])
	}
	s1, err := psi.ReadSessionFile(filepath.Join(ws, "bank.aligned.session.json"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := psi.ReadSessionFile(filepath.Join(ws, "shop.aligned.session.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s1.ShuffleSeed != s2.ShuffleSeed || s1.SessionID != s2.SessionID || !s1.Simulated || s1.Peer != "shop" || s2.Peer != "bank" {
		t.Fatalf("session records disagree: %+v / %+v", s1, s2)
	}
}

func TestVFLPSIBadInput(t *testing.T) {
	bin := buildTeeml(t)
	ws := vflWorkspace(t)
	bad := filepath.Join(ws, "bad.ids")
	os.WriteFile(bad, []byte("a\n\nb\n"), 0o600)
	out := filepath.Join(ws, "out.aligned")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "leader", "--ids", bad, "--listen", "127.0.0.1:0"}, "bad.ids:2: empty ID"},
		{[]string{"--role", "boss", "--ids", bad, "--listen", "127.0.0.1:0"}, `role "boss"`},
		{[]string{"--role", "leader", "--ids", bad}, "exactly one of --peer"},
		{[]string{"--role", "leader", "--ids", bad, "--listen", ":0", "--mode", "all"}, `mode "all"`},
		{[]string{"--role", "follower", "--ids", bad, "--peer", "x:1"}, "role [leader], want follower"},
	} {
		args := append([]string{"vfl", "psi", "-w", ws, "-n", "bank", "-o", out}, c.args...)
		_, stderr, code := run(t, bin, args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if code == 0 || !strings.Contains(last, c.want) {
			t.Fatalf("%v: exit %d, want a last line with %q, got:\n%s", c.args, code, c.want, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: output written despite the error", c.args)
		}
	}
}
