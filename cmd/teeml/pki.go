package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/pki"
)

func newPKICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Federation PKI: CA workspace, attested identity CSRs, certify/revoke/list, federation bundles",
		Long: "A federation CA issues identity certificates to parties whose TEE evidence (carried in the CSR and\n" +
			"bound to the identity key) passes an attestation policy. Parties receive the root certificate as a\n" +
			"trusted file and a signed federation bundle (root, signing CA, CRL, members). See docs/trust-model.md.",
	}
	cmd.AddCommand(newPKIInitCmd(), newPKICSRCmd(), newPKICertifyCmd(), newPKIRevokeCmd(), newPKIListCmd(),
		newPKIBundleCmd(), newPKICheckBundleCmd())
	return cmd
}

func newPKIInitCmd() *cobra.Command {
	var dir, federation, curve string
	var identityValidity, crlValidity time.Duration
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a CA workspace: root CA, signing CA (keys 0600), empty members.yaml and CRL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.InitCA(dir, pki.InitOptions{Federation: federation, Curve: curve,
				IdentityValidity: identityValidity, CRLValidity: crlValidity})
			if err != nil {
				return err
			}
			c := ca.Config()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "created CA workspace %s for federation %q (%s)\n", dir, c.Federation, c.Curve)
			fmt.Fprintf(w, "root certificate: %s (sha256 %s, valid until %s)\n", filepath.Join(dir, pki.RootCertFile),
				pki.Fingerprint(ca.Root()), ca.Root().NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "identity certificates valid %s, CRLs valid %s\n", c.IdentityValidity, c.CRLValidity)
			fmt.Fprintf(w, "give %s to every party as a trusted file of its enclave; keys stay in %s\n", pki.RootCertFile, dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA workspace directory (must not exist or be empty)")
	f.StringVar(&federation, "federation", pki.DefaultFederation, "federation name (O= of every certificate)")
	f.StringVar(&curve, "curve", pki.P256, "CA key curve: P-256 or P-384")
	f.DurationVar(&identityValidity, "identity-validity", pki.DefaultIdentityValidity, "lifetime of identity certificates")
	f.DurationVar(&crlValidity, "crl-validity", pki.DefaultCRLValidity, "CRL lifetime (nextUpdate); parties refuse everyone once it passes")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newPKICSRCmd() *cobra.Command {
	var name, role, keyOut, out, curve string
	var evf evidenceFlags
	cmd := &cobra.Command{
		Use:   "csr",
		Short: "Generate an identity key (0600) and a CSR carrying this TEE's evidence bound to the key",
		Long: "Run inside the party's TEE: generates the long-lived identity key, asks the platform (Gramine,\n" +
			"configfs-tsm, or explicit simulation) for evidence whose report data is SHA-256 of the key's\n" +
			"SubjectPublicKeyInfo, and writes a CSR with CN=name, OU=role and the evidence. Keep --key-out on\n" +
			"storage only the enclave can read (e.g. a Gramine encrypted mount).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := pki.CheckName(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if err := pki.CheckRole(role); err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if out == "" {
				out = name + ".csr"
			}
			if _, err := os.Lstat(keyOut); err == nil {
				return fmt.Errorf("--key-out %s exists: refusing to replace an identity key (remove it deliberately if you mean to)", keyOut)
			}
			iss, err := evf.issuer()
			if err != nil {
				return err
			}
			key, err := pki.GenerateKey(curve)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			csr, err := pki.NewCSR(ctx, key, name, role, iss)
			if err != nil {
				return err
			}
			parsed, err := pki.ParseCSR(csr)
			if err != nil {
				return err
			}
			if err := pki.SaveKey(keyOut, key); err != nil {
				return err
			}
			if err := atomicfile.WriteBytes(out, csr, 0o644); err != nil {
				_ = os.Remove(keyOut)
				return fmt.Errorf("csr: %w", err)
			}
			simNote := ""
			if parsed.Evidence.Simulated {
				simNote = " SIMULATED (no hardware protection)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (identity key, mode 0600) and %s: CSR for %q (%s) with %s evidence%s\n",
				keyOut, out, name, role, parsed.Evidence.TEE, simNote)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "member name (CN): letters, digits, '.', '_', '-'")
	f.StringVar(&role, "role", "", "role: "+strings.Join(pki.Roles, ", "))
	f.StringVar(&keyOut, "key-out", "identity-key.pem", "identity private key output (mode 0600; never replaced)")
	f.StringVarP(&out, "out", "o", "", "CSR output (default NAME.csr)")
	f.StringVar(&curve, "curve", pki.P256, "identity key curve: P-256 or P-384")
	evf.register(f)
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func newPKICertifyCmd() *cobra.Command {
	var dir, csrPath, policyFile, simKeys, collateral, out string
	var noPolicy bool
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "certify",
		Short: "Verify a CSR's evidence and key binding, judge it with --policy, and issue the identity certificate",
		Long: "Checks the CSR signature, verifies its TEE evidence (simulated evidence only with --sim-key), checks\n" +
			"that the evidence binds the CSR key, evaluates --policy for the requested role, refuses a name that\n" +
			"is already active, issues the identity certificate and records the member in members.yaml.\n" +
			"Without --policy it refuses unless --no-policy is given, and then warns that no policy was applied.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var pol *policy.Policy
			var opts []pki.CertifyOption
			switch {
			case policyFile != "" && noPolicy:
				return errors.New("give --policy or --no-policy, not both")
			case policyFile != "":
				var err error
				if pol, err = policy.Load(policyFile); err != nil {
					return err
				}
			case noPolicy:
				opts = append(opts, pki.WithoutPolicy())
			default:
				return errors.New("no attestation policy: give --policy FILE (or --no-policy to certify on valid evidence alone, which checks no measurement)")
			}
			ca, err := pki.OpenCA(dir)
			if err != nil {
				return err
			}
			csr, err := os.ReadFile(csrPath)
			if err != nil {
				return fmt.Errorf("csr: %w", err)
			}
			v, err := newEvidenceVerifier(simKeys)
			if err != nil {
				return err
			}
			if collateral != "" {
				b, err := os.ReadFile(collateral)
				if err != nil {
					return fmt.Errorf("collateral: %w", err)
				}
				opts = append(opts, pki.Collateral(b))
			}
			if validity != 0 {
				opts = append(opts, pki.Validity(validity))
			}
			if noPolicy {
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: --no-policy: NO ATTESTATION POLICY APPLIED: any correctly signed evidence from any code is accepted")
			}
			is, err := ca.Certify(cmd.Context(), csr, pol, v, time.Now(), opts...)
			if err != nil {
				return err
			}
			if out == "" {
				out = strings.TrimSuffix(csrPath, ".csr") + ".crt"
			}
			if err := atomicfile.WriteBytes(out, is.CertPEM, 0o644); err != nil {
				return fmt.Errorf("certificate: %w", err)
			}
			m := is.Member
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "certified %q as %s: serial %s, valid until %s; wrote %s\n", m.Name, m.Role, m.Serial,
				m.NotAfter.Format(time.RFC3339), out)
			fmt.Fprintf(w, "evidence: %s\n", evidenceLine(m.Evidence))
			if noPolicy {
				fmt.Fprintf(w, "policy: %s\n", m.Evidence.Policy)
			} else {
				fmt.Fprintf(w, "%s\n", m.Evidence.Policy) // "policy: peer … accepted …; warnings"
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA workspace directory")
	f.StringVar(&csrPath, "csr", "", "CSR made by teeml pki csr")
	f.StringVar(&policyFile, "policy", "", "attestation policy YAML (roles: collaborator, aggregator, …)")
	f.BoolVar(&noPolicy, "no-policy", false, "certify WITHOUT an attestation policy (insecure; explicit only)")
	f.StringVar(&simKeys, "sim-key", "", "PEM file of trusted simulation public keys (simulated evidence is refused without)")
	f.StringVar(&collateral, "collateral", "", "collateral for evidence whose CSR carries none (DCAP collateral JSON)")
	f.DurationVar(&validity, "validity", 0, "identity certificate lifetime (default: the workspace's identity_validity)")
	f.StringVarP(&out, "out", "o", "", "identity certificate output (default: the CSR path with .crt)")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("csr")
	return cmd
}

func evidenceLine(e pki.EvidenceSummary) string {
	s := e.TEE
	switch e.TEE {
	case "sgx":
		s += " mr_enclave " + e.Measurement
	case "tdx":
		s += " mrtd " + e.Measurement
	default:
		s += " measurement " + e.Measurement
	}
	s += ", tcb " + e.TCBStatus
	if e.Debug {
		s += ", DEBUG"
	}
	if e.Simulated {
		s += ", SIMULATED (no hardware protection)"
	}
	return s
}

func newPKIRevokeCmd() *cobra.Command {
	var dir, reason string
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a member's identity certificate and write a fresh CRL (parties learn it from the next bundle)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.OpenCA(dir)
			if err != nil {
				return err
			}
			m, err := ca.Revoke(args[0], reason, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %q (%s, serial %s); wrote %s; run teeml pki bundle and distribute it\n",
				m.Name, m.Role, m.Serial, filepath.Join(dir, pki.CRLFile))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA workspace directory")
	cmd.Flags().StringVar(&reason, "reason", "", "reason (free text; RFC 5280 names such as keyCompromise set the CRL reason code)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func writeMembers(cmd *cobra.Command, members []pki.Member, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if members == nil {
			members = []pki.Member{}
		}
		return enc.Encode(members)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tSERIAL\tCERTIFIED\tNOT AFTER\tEVIDENCE")
	for _, m := range members {
		ev := m.Evidence.TEE + " " + short(m.Evidence.Measurement)
		if m.Evidence.Simulated {
			ev += " SIMULATED"
		}
		if m.Evidence.Policy == pki.NoPolicyStatement {
			ev += " NO-POLICY"
		}
		status := string(m.Status)
		if m.Status == pki.Revoked && m.RevocationReason != "" {
			status += " (" + m.RevocationReason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, status, m.Serial,
			m.CertifiedAt.Format(time.RFC3339), m.NotAfter.Format(time.RFC3339), ev)
	}
	return tw.Flush()
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

func newPKIListCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the members (active and revoked) of a CA workspace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.OpenCA(dir)
			if err != nil {
				return err
			}
			members, err := ca.List()
			if err != nil {
				return err
			}
			return writeMembers(cmd, members, asJSON)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA workspace directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func bundleSummary(b *pki.Bundle) string {
	active, revoked := 0, 0
	for _, m := range b.Members.Members {
		if m.Status == pki.Active {
			active++
		} else {
			revoked++
		}
	}
	return fmt.Sprintf("federation %q, %d active and %d revoked members, CRL #%s valid until %s, root sha256 %s",
		b.Members.Federation, active, revoked, b.CRL.Number, b.CRL.NextUpdate.UTC().Format(time.RFC3339), pki.Fingerprint(b.Root))
}

func newPKIBundleCmd() *cobra.Command {
	var dir, out string
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Sign a fresh CRL and export the federation bundle (root, signing CA, CRL, members), signed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.OpenCA(dir)
			if err != nil {
				return err
			}
			path, err := ca.WriteBundle(out, time.Now())
			if err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("bundle: %w", err)
			}
			b, err := pki.ParseBundle(data)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s\n", path, bundleSummary(b))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA workspace directory")
	cmd.Flags().StringVarP(&out, "out", "o", "federation.bundle", "bundle file, or an existing directory for DIR/federation.bundle")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newPKICheckBundleCmd() *cobra.Command {
	var bundle, root string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check-bundle",
		Short: "Check a federation bundle against the pinned root as a party does, and list its members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fed, err := pki.LoadFederation(bundle, root)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(bundle)
			if err != nil {
				return fmt.Errorf("bundle: %w", err)
			}
			b, err := pki.ParseBundle(data)
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: OK: %s\n", bundle, bundleSummary(b))
				if time.Now().After(fed.CRLNextUpdate()) {
					fmt.Fprintf(cmd.OutOrStdout(), "WARNING: the CRL expired at %s: parties refuse every peer until a fresh bundle arrives\n",
						fed.CRLNextUpdate().UTC().Format(time.RFC3339))
				}
			}
			return writeMembers(cmd, fed.Members(), asJSON)
		},
	}
	cmd.Flags().StringVar(&bundle, "bundle", "federation.bundle", "federation bundle")
	cmd.Flags().StringVar(&root, "root", "", "pinned federation root certificate (root.pem)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the members as JSON")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
