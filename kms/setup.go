package kms

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/fl/run"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/pki"
)

// SetupOptions configures SetupSimulated.
type SetupOptions struct {
	// Listen is the broker's address (default 127.0.0.1:7443).
	Listen string
	// Store is the broker's store (default SQLite kms.db in the directory).
	Store store.Config
	// Clients are the client members (role collaborator) besides "admin"
	// (default col-1).
	Clients []string
}

func SetupSimulated(ctx context.Context, dir string, o SetupOptions) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:7443"
	}
	if o.Store.Driver == "" {
		o.Store = store.Config{Driver: "sqlite", Path: "kms.db"}
	}
	if len(o.Clients) == 0 {
		o.Clients = []string{"col-1"}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("kms setup: %s is not empty", dir)
	}
	for _, d := range []string{"pki", "party", "policies"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	mr, ms := run.SimMeasurement()
	hdr := "# " + SimulationBanner + "\n"
	brokerPol := hdr + "# Which evidence each caller role may connect to the broker with.\n" + string(run.SimPolicy("aggregator", "collaborator"))
	clientPol := hdr + "# What the broker (role kms) must run.\n" + string(run.SimPolicy("kms"))
	release := fmt.Sprintf("%s# Release policy: who may receive plaintext data keys of a key.\nmembers: [%s]\nattestation:\n  sgx:\n    - mr_enclave: %s\n      mr_signer: %s\n  allow_debug: false\n  allow_simulation: true\n", hdr, o.Clients[0], mr, ms)
	for name, body := range map[string]string{"policies/broker.yaml": brokerPol, "policies/client.yaml": clientPol, "release.yaml": release} {
		if err := atomicfile.WriteBytes(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	cp, err := policy.Parse(run.SimPolicy("kms", "aggregator", "collaborator"), "certification policy")
	if err != nil {
		return err
	}
	// Members: the broker "kms", its admin "admin" (role aggregator: the
	// PKI has no admin role) and the clients (role collaborator).
	roles := map[string]string{"kms": "kms", "admin": "aggregator"}
	for _, c := range o.Clients {
		if err := pki.CheckName(c); err != nil {
			return err
		}
		roles[c] = "collaborator"
	}
	pols := map[string]*policy.Policy{"kms": cp, "aggregator": cp, "collaborator": cp}
	if err := run.SetupSimulatedParties(ctx, dir, "kms-sim", roles, pols); err != nil {
		return err
	}
	for name := range roles {
		pc, err := run.LoadPartyConfig(dir, name)
		if err != nil {
			return err
		}
		c := Config{Name: name, Policy: "policies/client.yaml", Platform: *pc}
		c.Identity.Cert, c.Identity.Key = run.PKIDir+"/"+name+".crt", run.PKIDir+"/"+name+"-key.pem"
		c.Federation.Root, c.Federation.Bundle = run.RootFile, run.BundleFile
		if name == "kms" {
			c.Listen, c.Policy, c.Store, c.RootKey, c.Admins = o.Listen, "policies/broker.yaml", o.Store, "file:root.key", []string{"admin"}
		} else {
			c.Broker = o.Listen
		}
		b, err := yaml.Marshal(&c)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, name+".yaml"), append([]byte(hdr), b...), 0o600); err != nil {
			return err
		}
	}
	// The broker's simulated root key; an existing one is kept (it may
	// already protect stored keys).
	rk := filepath.Join(dir, "root.key")
	if _, err := os.Lstat(rk); errors.Is(err, os.ErrNotExist) {
		return rootkey.CreateFile(rk)
	} else if err != nil {
		return err
	}
	return nil
}
