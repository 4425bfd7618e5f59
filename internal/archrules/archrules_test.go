package archrules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The repository keeps every import rule.
func TestRepositoryKeepsTheRules(t *testing.T) {
	g, err := LoadModule(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"kms", "party", "fl/run", "vfl/run", "cmd/teeml", "ratls"} {
		if _, ok := g[must]; !ok {
			t.Fatalf("package %s not found: the loader is broken", must)
		}
	}
	for _, v := range Check(g, Rules) {
		t.Errorf("forbidden import: %s", v)
	}
}

// write makes a file of a throwaway module.
func write(t *testing.T, root, rel, src string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The rules trip: a module where the key broker reaches fl/run through
// another package, a CLI that opens a socket, and a test file and a
// testdata directory that may import anything.
func TestRulesTrip(t *testing.T) {
	root := t.TempDir()
	write(t, root, "go.mod", "module "+Module+"\n")
	write(t, root, "kms/kms.go", "package kms\nimport _ \""+Module+"/kms/store\"\n")
	write(t, root, "kms/store/store.go", "package store\nimport _ \""+Module+"/fl/run\"\n")
	write(t, root, "kms/kms_test.go", "package kms\nimport _ \""+Module+"/vfl/run\"\n")
	write(t, root, "kms/testdata/x.go", "package x\nimport _ \""+Module+"/vfl/run\"\n")
	write(t, root, "fl/run/run.go", "package run\n")
	write(t, root, "vfl/run/run.go", "package run\n")
	write(t, root, "cmd/teeml/main.go", "package main\nimport _ \"net\"\nimport _ \""+Module+"/fl/run\"\n")
	write(t, root, "cmd/teeml/psi.go", "package main\nimport _ \""+Module+"/party\"\n")
	write(t, root, "party/party.go", "package party\nimport _ \""+Module+"/ratls\"\n")
	write(t, root, "ratls/ratls.go", "package ratls\n")
	write(t, root, "fl/encrypted/e.go", "package encrypted\nimport _ \""+Module+"/kms\"\n")
	write(t, root, "sql/tpch/t.go", "package tpch\nimport _ \""+Module+"/ml\"\n")
	write(t, root, "sql/run/r.go", "package run\nimport _ \""+Module+"/sealed\"\n")
	write(t, root, "ml/ml.go", "package ml\n")
	write(t, root, "sealed/s.go", "package sealed\n")
	g, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range Check(g, Rules) {
		got = append(got, strings.Join(v.Chain, " → "))
	}
	want := []string{
		"kms → kms/store → fl/run",
		"kms/store → fl/run",
		"sql/tpch → ml",
		"cmd/teeml → net",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A clean tree has none.
	if err := os.Remove(filepath.Join(root, "kms/store/store.go")); err != nil {
		t.Fatal(err)
	}
	write(t, root, "kms/store/store.go", "package store\n")
	write(t, root, "sql/tpch/t.go", "package tpch\nimport _ \""+Module+"/sql/run\"\n")
	// The CLI may reach ratls through a service (fl/run → ratls), just
	// not import it, party or net itself.
	write(t, root, "fl/run/run.go", "package run\nimport _ \""+Module+"/ratls\"\n")
	write(t, root, "cmd/teeml/main.go", "package main\nimport _ \""+Module+"/fl/run\"\n")
	if err := os.Remove(filepath.Join(root, "cmd/teeml/psi.go")); err != nil {
		t.Fatal(err)
	}
	g, err = Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if vs := Check(g, Rules); len(vs) != 0 {
		t.Errorf("clean tree: %v", vs)
	}
}

func TestLoadRefusesBrokenSource(t *testing.T) {
	root := t.TempDir()
	write(t, root, "go.mod", "module "+Module+"\n")
	write(t, root, "a/a.go", "package a\nimport (\n")
	if _, err := Load(root); err == nil || !strings.Contains(err.Error(), "a.go") {
		t.Errorf("broken file: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("empty tree accepted")
	}
}
