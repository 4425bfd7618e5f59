package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/ear"
	"github.com/teeml/teeml/attest/gramine"
	"github.com/teeml/teeml/attest/platform"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/attest/tsm"
	"github.com/teeml/teeml/attest/verifier"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/buildinfo"
)

// errRefused makes the process exit non-zero after the report was printed.
var errRefused = errors.New("attestation refused")

func newAttestCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "attest", Short: "Verify, inspect and produce TEE evidence (SGX/TDX DCAP, SEV-SNP, simulation)"}
	cmd.AddCommand(newAttestVerifyCmd(), newAttestInspectCmd(), newAttestQuoteCmd(), newAttestSimKeyCmd(), newAttestVerifyServerCmd(), newAttestEARCmd())
	return cmd
}

func newAttestVerifyCmd() *cobra.Command {
	var evidence, collateral, policyFile, cczoo, role, peer, at, simKeys, reportData, output string
	var asJSON bool
	var earf earFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify evidence offline against its collateral and (optionally) a policy; exit 0 only if accepted",
		Long: "Verify evidence offline: signatures, certificate chains to the pinned vendor roots, CRLs,\n" +
			"collateral validity and TCB level. With --policy (teeml YAML) or --cczoo (CCZoo dynamic_config.json)\n" +
			"the claims are judged for --role; exit 0 only if accepted. Without a policy, exit 0 means\n" +
			"cryptographically valid and the output says that no policy was applied.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				if output != "text" && output != "json" {
					return fmt.Errorf("give --json or --output %s, not both", output)
				}
				output = "json"
			}
			var earKey *ecdsa.PrivateKey
			switch output {
			case "text", "json":
				if earf.key != "" {
					return fmt.Errorf("--ear-key is for --output ear")
				}
			case "ear":
				if earf.key == "" {
					return fmt.Errorf("--output ear: give the verifier's signing key with --ear-key (PEM ECDSA P-256)")
				}
				k, err := ear.LoadSigningKey(earf.key)
				if err != nil {
					return err
				}
				earKey = k
			default:
				return fmt.Errorf("--output %q: want text, json or ear", output)
			}
			q, err := os.ReadFile(evidence)
			if err != nil {
				return fmt.Errorf("evidence: %w", err)
			}
			ev := &attest.Evidence{Quote: q}
			if collateral != "" {
				if ev.Collateral, err = os.ReadFile(collateral); err != nil {
					return fmt.Errorf("collateral: %w", err)
				}
			}
			now := time.Now()
			if at != "" {
				if now, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at %q: want RFC 3339, e.g. 2025-07-01T00:00:00Z", at)
				}
			}
			v, err := newEvidenceVerifier(simKeys)
			if err != nil {
				return err
			}
			j := verifier.Judge{Role: role}
			var policySrc []byte
			switch {
			case policyFile != "" && cczoo != "":
				return fmt.Errorf("give --policy or --cczoo, not both")
			case policyFile != "":
				if j.Policy, err = policy.Load(policyFile); err != nil {
					return err
				}
				policySrc, _ = os.ReadFile(policyFile)
			case cczoo != "":
				if role == "" {
					j.Role = "peer"
				}
				if j.Policy, err = policy.LoadCCZoo(cczoo, j.Role); err != nil {
					return err
				}
				policySrc, _ = os.ReadFile(cczoo)
			}
			if peer != "" {
				j.Opts = append(j.Opts, policy.Peer(peer))
			}
			if reportData != "" {
				rd, err := hex.DecodeString(reportData)
				if err != nil {
					return fmt.Errorf("--report-data: %w", err)
				}
				j.Opts = append(j.Opts, policy.ReportData(rd))
			}
			r, err := v.VerifyAndJudge(cmd.Context(), evidence, ev, now, j)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				err = enc.Encode(r)
			case "ear":
				err = earf.write(cmd.OutOrStdout(), r, earKey, ev.Quote, policySrc)
			default:
				err = r.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if !r.Accepted {
				return fmt.Errorf("%w: %s", errRefused, r.Summary)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&evidence, "evidence", "", "raw evidence: DCAP quote, SEV-SNP report or simulated quote")
	f.StringVar(&collateral, "collateral", "", "collateral: DCAP collateral JSON, or SEV-SNP VCEK (PEM/DER/cert table)")
	f.StringVar(&policyFile, "policy", "", "teeml policy YAML")
	f.StringVar(&cczoo, "cczoo", "", "CCZoo dynamic_config.json (sgx_mrs list and verify_* switches)")
	f.StringVar(&role, "role", "", "policy role to judge the evidence as (needed when the policy has several)")
	f.StringVar(&peer, "peer", "", "peer name for messages")
	f.StringVar(&at, "at", "", "verify at this time (RFC 3339) instead of now")
	f.StringVar(&simKeys, "sim-key", "", "PEM file of trusted simulation public keys (simulated evidence is refused without)")
	f.StringVar(&reportData, "report-data", "", "require this report data (hex, zero-padded to 64 bytes)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON (--output json)")
	f.StringVar(&output, "output", "text", "text, json, or ear: an EAT Attestation Result (draft-ietf-rats-ear), a JWT signed ES256 with --ear-key")
	earf.register(f)
	_ = cmd.MarkFlagRequired("evidence")
	return cmd
}

// newEvidenceVerifier builds the verifier for every kind of evidence; simulated
// evidence verifies only with the trusted simulation keys in simKeysFile.
func newEvidenceVerifier(simKeysFile string) (*verifier.Verifier, error) {
	var cfg verifier.Config
	if simKeysFile != "" {
		keys, err := sim.LoadPublicKeys(simKeysFile)
		if err != nil {
			return nil, err
		}
		cfg.SimulationKeys = keys
	}
	return verifier.New(cfg)
}

func newAttestInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Parse evidence and print its fields WITHOUT verifying anything",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("evidence: %w", err)
			}
			fields, err := verifier.Inspect(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var sb strings.Builder
			sb.WriteString("NOT VERIFIED: parsed only; use teeml attest verify to check signatures and collateral\n")
			for _, f := range fields {
				fmt.Fprintf(&sb, "%s: %s\n", f.Name, f.Value)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), sb.String())
			return err
		},
	}
}

func newAttestQuoteCmd() *cobra.Command {
	var reportData, out string
	var evf evidenceFlags
	cmd := &cobra.Command{
		Use:   "quote",
		Short: "Produce evidence binding --report-data on this platform (Gramine, configfs-tsm, or explicit simulation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rd, err := hex.DecodeString(reportData)
			if err != nil || len(rd) > 64 {
				return fmt.Errorf("--report-data: want at most 64 bytes of hex")
			}
			iss, err := evf.issuer()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			ev, err := iss.Issue(ctx, rd)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteBytes(out, ev.Quote, 0o644); err != nil {
				return err
			}
			if len(ev.Collateral) > 0 {
				if err := atomicfile.WriteBytes(out+".collateral", ev.Collateral, 0o644); err != nil {
					return err
				}
			}
			sim := ""
			if ev.Simulated {
				sim = " SIMULATED (no hardware protection)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s evidence%s, %d bytes\n", out, ev.TEE, sim, len(ev.Quote))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&reportData, "report-data", "", "report data to bind (hex, ≤ 64 bytes)")
	f.StringVarP(&out, "out", "o", "evidence.bin", "output file")
	evf.register(f)
	_ = cmd.MarkFlagRequired("report-data")
	return cmd
}

// evidenceFlags are the flags that choose where evidence comes from
// (attest quote, pki csr).
type evidenceFlags struct {
	platform, gramineRoot, tsmRoot            string
	simKey, simTEE, simMREnclave, simMRSigner string
	simProd, simSVN                           uint16
	simDebug                                  bool
}

func (e *evidenceFlags) register(f *pflag.FlagSet) {
	f.StringVar(&e.platform, "platform", platform.Auto, "auto, gramine, tsm or sim (sim is insecure and always labelled)")
	f.StringVar(&e.gramineRoot, "gramine-root", gramine.DefaultRoot, "Gramine attestation pseudo-fs")
	f.StringVar(&e.tsmRoot, "tsm-root", tsm.DefaultRoot, "configfs-tsm report directory")
	f.StringVar(&e.simKey, "sim-key", "", "simulation private key (teeml attest sim-key)")
	f.StringVar(&e.simTEE, "sim-tee", "sgx", "simulation: TEE to imitate (sgx, tdx, sev-snp)")
	f.StringVar(&e.simMREnclave, "sim-mr-enclave", "", "simulation: MRENCLAVE (hex)")
	f.StringVar(&e.simMRSigner, "sim-mr-signer", "", "simulation: MRSIGNER (hex)")
	f.Uint16Var(&e.simProd, "sim-isv-prod-id", 0, "simulation: ISVPRODID")
	f.Uint16Var(&e.simSVN, "sim-isv-svn", 0, "simulation: ISVSVN")
	f.BoolVar(&e.simDebug, "sim-debug", false, "simulation: set the debug attribute")
}

// issuer returns the issuer the flags choose.
func (e *evidenceFlags) issuer() (attest.Issuer, error) {
	pc := platform.Config{Platform: e.platform, GramineRoot: e.gramineRoot, TSMRoot: e.tsmRoot}
	if e.platform == platform.Sim {
		if e.simKey == "" {
			return nil, fmt.Errorf("--platform sim needs --sim-key (make one with teeml attest sim-key)")
		}
		key, err := sim.LoadKey(e.simKey)
		if err != nil {
			return nil, err
		}
		pc.SimKey = key
		pc.SimIdentity = sim.Identity{TEE: attest.TEE(e.simTEE), ISVProdID: e.simProd, ISVSVN: e.simSVN, Debug: e.simDebug}
		if err := decodeInto(pc.SimIdentity.MREnclave[:], e.simMREnclave, "--sim-mr-enclave"); err != nil {
			return nil, err
		}
		if err := decodeInto(pc.SimIdentity.MRSigner[:], e.simMRSigner, "--sim-mr-signer"); err != nil {
			return nil, err
		}
	}
	return platform.NewIssuer(pc)
}

func decodeInto(dst []byte, s, flag string) error {
	if s == "" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("%s: want %d bytes of hex", flag, len(dst))
	}
	copy(dst, b)
	return nil
}

func newAttestSimKeyCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "sim-key",
		Short: "Create a key for SIMULATED attestation (testing only: no hardware protection)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := sim.GenerateKey()
			if err != nil {
				return err
			}
			if err := sim.SaveKey(out, key); err != nil {
				return err
			}
			pub, err := sim.MarshalPublicKey(&key.PublicKey)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteBytes(out+".pub", pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (SIMULATION key: evidence it signs has no hardware protection)\n", out, out+".pub")
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "sim-key.pem", "private key file (public key goes to FILE.pub)")
	return cmd
}

// earFlags are the flags of `teeml attest verify --output ear`.
type earFlags struct {
	key, nonce, developer string
	validity              time.Duration
	rawEvidence           bool
}

func (e *earFlags) register(f *pflag.FlagSet) {
	f.StringVar(&e.key, "ear-key", "", "--output ear: the verifier's signing key (PEM ECDSA P-256); relying parties trust its public key")
	f.DurationVar(&e.validity, "ear-validity", 10*time.Minute, "--output ear: the result expires (exp) this long after it is issued (0: no exp)")
	f.StringVar(&e.nonce, "ear-nonce", "", "--output ear: the relying party's nonce, as eat_nonce")
	f.StringVar(&e.developer, "ear-verifier", "https://github.com/teeml/teeml", "--output ear: ear.verifier-id developer")
	f.BoolVar(&e.rawEvidence, "ear-raw-evidence", false, "--output ear: include the evidence as ear.raw-evidence")
}

// write prints r as a signed EAR token and a newline.
func (e *earFlags) write(w io.Writer, r *verifier.Report, key *ecdsa.PrivateKey, quote, policySrc []byte) error {
	if e.validity < 0 {
		return fmt.Errorf("--ear-validity %s: want a positive duration or 0", e.validity)
	}
	// iat is the verification time (--at when given: the result is as of then).
	o := ear.Options{VerifierID: ear.VerifierID{Developer: e.developer, Build: "teeml " + buildinfo.Read().Version}, Now: r.At,
		Validity: e.validity, Nonce: e.nonce, PolicySource: policySrc}
	if e.rawEvidence {
		o.RawEvidence = quote
	}
	res, err := ear.New(r, o)
	if err != nil {
		return err
	}
	tok, err := ear.Sign(res, key)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, tok)
	return err
}

func newAttestEARCmd() *cobra.Command {
	var keys, nonce, at string
	var maxAge time.Duration
	cmd := &cobra.Command{
		Use:   "ear-verify TOKEN-FILE",
		Short: "Verify an EAT Attestation Result (EAR JWT, ES256) against trusted verifier keys and print its claims",
		Long: "Verify an EAR token (teeml attest verify --output ear, or another verifier's): the signature by one\n" +
			"of the --keys (PEM PUBLIC KEY blocks, ECDSA P-256), alg ES256 only, the profile\n" +
			"tag:github.com,2023:veraison/ear, iat not in the future, exp not passed, --max-age and --nonce.\n" +
			"Exit 0 only if the token verifies and every submod's ear.status is affirming.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("ear token: %w", err)
			}
			trusted, err := ear.LoadPublicKeys(keys)
			if err != nil {
				return err
			}
			o := ear.VerifyOptions{Keys: trusted, MaxAge: maxAge, Nonce: nonce}
			if at != "" {
				if o.Now, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at %q: want RFC 3339, e.g. 2025-07-01T00:00:00Z", at)
				}
			}
			r, err := ear.Verify(string(tok), o)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(r); err != nil {
				return err
			}
			for name, a := range r.Submods {
				if a.Status != ear.Affirming {
					return fmt.Errorf("%w: %s: submod %q: ear.status %s", errRefused, args[0], name, a.Status)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keys, "keys", "", "trusted verifier public keys (PEM PUBLIC KEY blocks)")
	f.StringVar(&nonce, "nonce", "", "require this eat_nonce")
	f.StringVar(&at, "at", "", "check freshness at this time (RFC 3339) instead of now")
	f.DurationVar(&maxAge, "max-age", 0, "refuse results issued longer ago (0: exp only)")
	_ = cmd.MarkFlagRequired("keys")
	return cmd
}
