package kms

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
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

// SetupSimulated writes a simulated key broker directory in dir (which must
// be empty or missing): the broker "kms", its administrator "admin" and the
// clients, each with a party configuration and an identity of a new CA
// (the scheme of party/partysim), a configuration file <name>.yaml each,
// the broker's and clients' policies, a release policy for the first client
// and a plain-file (simulated) root key.
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
	hdr := "# " + sim.Banner + "\n"
	brokerPol := string(partysim.Policy("aggregator", "collaborator"))
	clientPol := string(partysim.Policy("kms"))
	release := fmt.Sprintf("%s# Release policy: who may receive plaintext data keys of a key.\nmembers: [%s]\n%s", hdr, o.Clients[0], partysim.Attestation("", "collaborator"))
	for name, body := range map[string]string{"policies/broker.yaml": brokerPol, "policies/client.yaml": clientPol, "release.yaml": release} {
		if err := atomicfile.WriteBytes(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	cp, err := policy.Parse(partysim.Policy("kms", "aggregator", "collaborator"), "certification policy")
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
	if err := partysim.Federation(ctx, dir, "kms-sim", roles, pols); err != nil {
		return err
	}
	for name := range roles {
		pc, err := party.LoadConfig(party.ConfigFile(dir, name))
		if err != nil {
			return err
		}
		c := Config{Name: name, Policy: "policies/client.yaml", Platform: *pc}
		c.Identity.Cert, c.Identity.Key = party.PKIDir+"/"+name+".crt", party.PKIDir+"/"+name+"-key.pem"
		c.Federation.Root, c.Federation.Bundle = party.RootFile, party.BundleFile
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

// WriteWorkspaceConfig completes c for member of the simulated workspace
// dir (party/partysim layout: its platform from party/<member>.yaml, its
// identity and the federation under pki/) and writes it to path (0600),
// headed by the simulation banner and what.
func WriteWorkspaceConfig(dir, member, path, what string, c *Config) error {
	pc, err := party.LoadConfig(party.ConfigFile(dir, member))
	if err != nil {
		return err
	}
	c.Name, c.Platform = member, *pc
	c.Identity.Cert, c.Identity.Key = party.PKIDir+"/"+member+".crt", party.PKIDir+"/"+member+"-key.pem"
	c.Federation.Root, c.Federation.Bundle = party.RootFile, party.BundleFile
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append([]byte(partysim.Header(what)), b...), 0o600)
}
