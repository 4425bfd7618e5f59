// Package cleanroom sets up and runs teeml's data clean room end to end:
// each data owner's key broker (package kms), the owners' sealed tables,
// the signed contract (package contract) and the analytics party (package
// sql/cleanroom), each a process of its own. Like fl/encrypted it composes
// two services; the services themselves do not import each other.
//
// The quickstart's workspace, all SIMULATED attestation:
//
//	pki/, party/, ca/            federation (party/partysim): bank, retailer (role owner),
//	                             analytics (role analytics), bank-kms, retailer-kms (role kms)
//	contract.yaml, contract.sig  the contract and both owners' signatures
//	<owner>-kms.yaml, <owner>-kms/  each owner's broker: config, SQLite store, root key
//	<owner>.yaml                 the owner as its broker's admin (kms client config)
//	analytics-<owner>.yaml       the analytics party as a client of that broker
//	<recipient>.hpke             each recipient's HPKE private key (results are sealed to it)
//	tables/<table>.sealed        the owners' tables, sealed under their own keys
//	results/                     sealed results, one file per recipient and query
package cleanroom

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/kms/rootkey"
	"github.com/teeml/teeml/kms/store"
	"github.com/teeml/teeml/party"
	"github.com/teeml/teeml/party/partysim"
	"github.com/teeml/teeml/pki"
)

// The quickstart's members and files.
const (
	Analytics     = "analytics"
	ContractFile  = "contract.yaml"
	SignatureFile = "contract.sig"
	TablesDir     = "tables"
	ResultsDir    = "results"
)

// Owners of the quickstart, with their table.
var Owners = []struct{ Name, Table string }{{"bank", "bank_customers"}, {"retailer", "retail_customers"}}

// BrokerMember is owner's key broker member name.
func BrokerMember(owner string) string { return owner + "-kms" }

// BrokerConfig is owner's broker configuration file.
func BrokerConfig(dir, owner string) string { return filepath.Join(dir, BrokerMember(owner)+".yaml") }

// OwnerConfig is owner's client configuration (the broker's admin).
func OwnerConfig(dir, owner string) string { return filepath.Join(dir, owner+".yaml") }

// AnalyticsConfig is the analytics party's client configuration for
// owner's broker.
func AnalyticsConfig(dir, owner string) string {
	return filepath.Join(dir, Analytics+"-"+owner+".yaml")
}

// TablePath is where a table's sealed file lives.
func TablePath(dir, table string) string { return filepath.Join(dir, TablesDir, table+".sealed") }

// RecipientKey is recipient's HPKE private key file.
func RecipientKey(dir, recipient string) string { return filepath.Join(dir, recipient+".hpke") }

// Budgets of the quickstart's owners (ε); the noisy template costs 1.
const QuickstartEpsilon = 2

// Setup writes a new simulated clean-room workspace in dir (empty or
// missing): the federation, both brokers' configurations and root keys,
// the recipients' HPKE keys, the contract and both owners' signatures.
// The client configurations, which need the brokers' addresses, are
// written by WriteClientConfigs once the brokers listen.
func Setup(ctx context.Context, dir string) (*contract.Contract, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("cleanroom setup: %s is not empty", dir)
	}
	for _, d := range []string{"policies", TablesDir, ResultsDir, "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("cleanroom setup: %w", err)
		}
	}
	roles := map[string]string{Analytics: "analytics"}
	for _, o := range Owners {
		roles[o.Name], roles[BrokerMember(o.Name)] = "owner", "kms"
	}
	cp, err := policy.Parse(partysim.Policy("kms", "owner", "analytics"), "certification policy")
	if err != nil {
		return nil, err
	}
	if err := partysim.Federation(ctx, dir, "cleanroom-sim", roles, map[string]*policy.Policy{"kms": cp, "owner": cp, "analytics": cp}); err != nil {
		return nil, err
	}
	for name, body := range map[string][]byte{"policies/broker.yaml": partysim.Policy("owner", "analytics"), "policies/client.yaml": partysim.Policy("kms")} {
		if err := atomicfile.WriteBytes(filepath.Join(dir, name), body, 0o644); err != nil {
			return nil, err
		}
	}
	for _, o := range Owners {
		if err := os.MkdirAll(filepath.Join(dir, BrokerMember(o.Name)), 0o700); err != nil {
			return nil, err
		}
		if err := rootkey.CreateFile(filepath.Join(dir, BrokerMember(o.Name), "root.key")); err != nil {
			return nil, err
		}
		c := kms.Config{Listen: "127.0.0.1:0", Policy: "policies/broker.yaml", RootKey: "file:" + BrokerMember(o.Name) + "/root.key",
			Admins: []string{o.Name}, Store: store.Config{Driver: "sqlite", Path: BrokerMember(o.Name) + "/kms.db"}}
		if err := writeKMSConfig(dir, BrokerMember(o.Name), BrokerConfig(dir, o.Name), &c); err != nil {
			return nil, err
		}
	}
	recipients := map[string]*ecdh.PublicKey{}
	for _, o := range Owners {
		k, err := GenerateRecipientKey(RecipientKey(dir, o.Name))
		if err != nil {
			return nil, err
		}
		recipients[o.Name] = k.PublicKey()
	}
	raw := contract.Example(contract.ExampleOptions{Attestation: partysim.Attestation("", "analytics")[len("attestation:\n"):],
		Recipients: recipients, BankEpsilon: QuickstartEpsilon, RetailEpsilon: QuickstartEpsilon, MinGroupSize: 5})
	c, err := contract.Parse(raw, ContractFile)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, ContractFile), raw, 0o644); err != nil {
		return nil, err
	}
	var sigs []byte
	for _, o := range Owners {
		s, err := SignAs(raw, party.WorkspaceFiles(dir, o.Name))
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, s...)
	}
	return c, atomicfile.WriteBytes(filepath.Join(dir, SignatureFile), sigs, 0o644)
}

// SignAs signs the contract with the identity in files.
func SignAs(raw []byte, files party.Files) ([]byte, error) {
	cert, err := pki.LoadCertificate(files.Cert)
	if err != nil {
		return nil, err
	}
	key, err := pki.LoadKey(files.Key)
	if err != nil {
		return nil, err
	}
	return contract.Sign(raw, cert, key, time.Now())
}

// WriteClientConfigs writes the owners' (admin) and the analytics party's
// client configurations for the brokers at addrs (by owner).
func WriteClientConfigs(dir string, addrs map[string]string) error {
	for _, o := range Owners {
		addr := addrs[o.Name]
		if addr == "" {
			return fmt.Errorf("cleanroom: no address for %s's broker", o.Name)
		}
		for member, path := range map[string]string{o.Name: OwnerConfig(dir, o.Name), Analytics: AnalyticsConfig(dir, o.Name)} {
			c := kms.Config{Broker: addr, Policy: "policies/client.yaml"}
			if err := writeKMSConfig(dir, member, path, &c); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeKMSConfig(dir, member, path string, c *kms.Config) error {
	return kms.WriteWorkspaceConfig(dir, member, path, "Key broker configuration of "+member+" (clean-room quickstart; see kms.Config).", c)
}

const recipientPEM = "TEEML CLEANROOM RECIPIENT KEY"

// GenerateRecipientKey writes a new P-256 HPKE private key to path
// (created, never overwritten, mode 0600).
func GenerateRecipientKey(path string) (*ecdh.PrivateKey, error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("recipient key %s: %w", path, os.ErrExist)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: recipientPEM, Bytes: der})
	if err := atomicfile.WriteBytes(path, b, 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadRecipientKey reads a key GenerateRecipientKey wrote.
func LoadRecipientKey(path string) (*ecdh.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipient key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != recipientPEM {
		return nil, fmt.Errorf("recipient key %s: not a %q PEM block", path, recipientPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("recipient key %s: %w", path, err)
	}
	var ek *ecdh.PrivateKey
	switch k := k.(type) {
	case *ecdh.PrivateKey:
		ek = k
	case *ecdsa.PrivateKey: // x509 parses P-256 PKCS #8 keys as ECDSA
		if ek, err = k.ECDH(); err != nil {
			return nil, fmt.Errorf("recipient key %s: %w", path, err)
		}
	}
	if ek == nil || ek.Curve() != ecdh.P256() {
		return nil, errors.New("recipient key " + path + ": not a P-256 key")
	}
	return ek, nil
}
