package kms

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
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

// Simulated enclave measurement of every party of a SetupSimulated
// directory.
var (
	simMREnclave = sha256.Sum256([]byte("teeml kms SIMULATED enclave"))
	simMRSigner  = sha256.Sum256([]byte("teeml kms SIMULATED signer"))
)

// SetupSimulated writes a complete SIMULATED key broker deployment into dir
// (which must not exist or be empty): a federation CA (dir/ca), identities
// for the broker "kms" (role kms), "admin" (role aggregator; the broker's
// admin) and the clients (role collaborator), simulated evidence keys,
// policies accepting only the simulated measurement, the broker's
// configuration kms.yaml with a simulated (file:) root key, one client configuration
// <name>.yaml per member, and release.yaml, a release policy for the first
// client. It is for demonstrations and tests: every file says SIMULATION.
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
	mr, ms := hex.EncodeToString(simMREnclave[:]), hex.EncodeToString(simMRSigner[:])
	hdr := "# " + SimulationBanner + "\n"
	sgx := fmt.Sprintf("    sgx:\n      - mr_enclave: %s\n        mr_signer: %s\n    allow_debug: false\n    allow_simulation: true\n", mr, ms)
	brokerPol := hdr + "# Which evidence each caller role may connect to the broker with.\nroles:\n  aggregator:\n" + sgx + "  collaborator:\n" + sgx
	clientPol := hdr + "# What the broker (role kms) must run.\nroles:\n  kms:\n" + sgx
	certPol := "roles:\n  kms:\n" + sgx + "  aggregator:\n" + sgx + "  collaborator:\n" + sgx
	release := fmt.Sprintf("%s# Release policy: who may receive plaintext data keys of a key.\nmembers: [%s]\nattestation:\n  sgx:\n    - mr_enclave: %s\n      mr_signer: %s\n  allow_debug: false\n  allow_simulation: true\n", hdr, o.Clients[0], mr, ms)
	for name, body := range map[string]string{"policies/broker.yaml": brokerPol, "policies/client.yaml": clientPol, "release.yaml": release} {
		if err := atomicfile.WriteBytes(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	cp, err := policy.Parse([]byte(certPol), "certification policy")
	if err != nil {
		return err
	}
	now := time.Now()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.InitOptions{Federation: "kms-sim", Now: now.Add(-time.Minute)})
	if err != nil {
		return err
	}
	type m struct{ name, role string }
	members := []m{{"kms", "kms"}, {"admin", "aggregator"}}
	for _, c := range o.Clients {
		members = append(members, m{c, "collaborator"})
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var trusted []byte
	parties := map[string]run.PartyConfig{}
	for _, mb := range members {
		if err := pki.CheckName(mb.name); err != nil {
			return err
		}
		k, err := simKey(dir, mb.name)
		if err != nil {
			return err
		}
		pub, _ := pemPublic(k)
		trusted = append(trusted, pub...)
		parties[mb.name] = run.PartyConfig{Platform: "sim", Sim: run.SimConfig{Key: "party/" + mb.name + "-sim-key.pem", TEE: string(attest.SGX), MREnclave: mr, MRSigner: ms},
			TrustedSimKeys: "party/sim-trusted.pem"}
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, "party", "sim-trusted.pem"), trusted, 0o644); err != nil {
		return err
	}
	for _, mb := range members {
		pc := parties[mb.name]
		iss, err := pc.Issuer(dir, quiet)
		if err != nil {
			return err
		}
		ev, err := pc.Verifier(dir)
		if err != nil {
			return err
		}
		key, err := pki.GenerateKey(pki.P256)
		if err != nil {
			return err
		}
		csr, err := pki.NewCSR(ctx, key, mb.name, mb.role, iss)
		if err != nil {
			return err
		}
		is, err := ca.Certify(ctx, csr, cp, ev, now)
		if err != nil {
			return fmt.Errorf("certify %s: %v", mb.name, err)
		}
		if err := pki.SaveKey(filepath.Join(dir, "pki", mb.name+"-key.pem"), key); err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, "pki", mb.name+".crt"), is.CertPEM, 0o644); err != nil {
			return err
		}
		c := Config{Name: mb.name, Policy: "policies/client.yaml", Platform: pc}
		c.Identity.Cert, c.Identity.Key = "pki/"+mb.name+".crt", "pki/"+mb.name+"-key.pem"
		c.Federation.Root, c.Federation.Bundle = "pki/root.pem", "pki/federation.bundle"
		file := mb.name + ".yaml"
		if mb.name == "kms" {
			c.Listen, c.Policy, c.Store, c.RootKey, c.Admins = o.Listen, "policies/broker.yaml", o.Store, "file:root.key", []string{"admin"}
		} else {
			c.Broker = o.Listen
		}
		b, err := yaml.Marshal(&c)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, file), append([]byte(hdr), b...), 0o600); err != nil {
			return err
		}
	}
	if _, err := ca.WriteBundle(filepath.Join(dir, "pki", "federation.bundle"), now); err != nil {
		return err
	}
	root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root().Raw})
	if err := atomicfile.WriteBytes(filepath.Join(dir, "pki", "root.pem"), root, 0o644); err != nil {
		return err
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

func simKey(dir, name string) (*ecdsa.PrivateKey, error) {
	k, err := sim.GenerateKey()
	if err != nil {
		return nil, err
	}
	return k, sim.SaveKey(filepath.Join(dir, "party", name+"-sim-key.pem"), k)
}

func pemPublic(k *ecdsa.PrivateKey) ([]byte, error) { return sim.MarshalPublicKey(&k.PublicKey) }
