package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/kms/rootkey"
)

// rootKeySpecHelp explains --root-key for every command that takes it.
const rootKeySpecHelp = "root key holder: file:PATH (" + sim.Prefix + ": local key file), gramine:[mrenclave|mrsigner] " +
	"(Gramine SGX sealing key), or pkcs11:module=LIB;token=LABEL;label=KEY;pin-env=VAR " +
	"(or RFC 7512 pkcs11:token=..;object=..?module-path=..&pin-source=file:..). " +
	"The PIN is read from pin-env or pin-file, never from the command line"

// newKMSRootKeyCmd returns "rootkey", meant to sit under "teeml kms".
func newKMSRootKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rootkey",
		Short: "Create and check the key broker's root key (key file, Gramine sealing key or PKCS#11 token)",
		Long: "The key broker encrypts every stored key under a root key that stays in its holder: Gramine's SGX\n" +
			"sealing key inside an enclave, an AES key inside a PKCS#11 HSM, or (simulation only) a local file.\n" +
			"See docs/kms-rootkeys.md.",
	}
	cmd.AddCommand(newKMSRootKeyInitCmd(), newKMSRootKeyCheckCmd())
	return cmd
}

func newKMSRootKeyInitCmd() *cobra.Command {
	var spec string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a root key: a new 0600 key file (simulation) or a non-extractable AES-256 key in the token",
		Long: "Creates the root key named by --root-key. It never replaces an existing key file or token key:\n" +
			"losing the root key makes every stored key unreadable. A Gramine sealing key needs no init.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rootkey.Init(spec); err != nil {
				return err
			}
			w, err := rootkey.Open(spec)
			if err != nil {
				return fmt.Errorf("created, but cannot open it: %w", err)
			}
			defer w.Close()
			if w.Simulated() {
				slog.Warn(sim.Notice("the root key is a local file, not sealed to a TEE or held by an HSM"), "holder", w.Describe())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created root key: %s\n", w.Describe())
			return nil
		},
	}
	cmd.Flags().StringVar(&spec, "root-key", "", rootKeySpecHelp)
	_ = cmd.MarkFlagRequired("root-key")
	return cmd
}

func newKMSRootKeyCheckCmd() *cobra.Command {
	var spec string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Open a root key and prove it works with a wrap/unwrap/tamper self-test",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := rootkey.Open(spec)
			if err != nil {
				return err
			}
			defer w.Close()
			if w.Simulated() {
				slog.Warn(sim.Notice("the root key is a local file, not sealed to a TEE or held by an HSM"), "holder", w.Describe())
			}
			if err := selfTest(w); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "root key OK: %s\n", w.Describe())
			return nil
		},
	}
	cmd.Flags().StringVar(&spec, "root-key", "", rootKeySpecHelp)
	_ = cmd.MarkFlagRequired("root-key")
	return cmd
}

// selfTest wraps a random key, unwraps it, and checks that a wrong aad is
// refused, so "check" cannot pass on a holder that does not authenticate.
func selfTest(w rootkey.Wrapper) error {
	pt := make([]byte, 32)
	if _, err := rand.Read(pt); err != nil {
		return err
	}
	aad := []byte("teeml kms rootkey self-test")
	blob, err := w.Wrap(pt, aad)
	if err != nil {
		return fmt.Errorf("self-test: wrap: %w", err)
	}
	got, err := w.Unwrap(blob, aad)
	if err != nil {
		return fmt.Errorf("self-test: unwrap: %w", err)
	}
	if !bytes.Equal(got, pt) {
		return fmt.Errorf("self-test: unwrap returned different bytes")
	}
	if _, err := w.Unwrap(blob, append(aad, '!')); err == nil {
		return fmt.Errorf("self-test: unwrap with a wrong aad succeeded; holder does not authenticate")
	}
	return nil
}
