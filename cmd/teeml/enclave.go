package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/enclave"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/yamlx"
)

func newEnclaveCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "enclave", Short: "Gramine enclave tooling: signing key, MRSIGNER, manifest, signing, SIGSTRUCT inspection"}
	cmd.AddCommand(newEnclaveKeygenCmd(), newEnclaveMRSignerCmd(), newEnclaveManifestCmd(), newEnclaveSignCmd(),
		newEnclaveInspectCmd(), newEnclavePolicyCmd())
	return cmd
}

func newEnclaveKeygenCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create an enclave signing key: RSA-3072 with public exponent 3, as Gramine requires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := enclave.GenerateSigningKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := enclave.WriteKeyPEM(out, key, force); err != nil {
				return err
			}
			mr := enclave.MRSigner(&key.PublicKey)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\nmr_signer: %x\n", out, mr[:])
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "enclave-key.pem", "key file (mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing key (changes MRSIGNER)")
	return cmd
}

func newEnclaveMRSignerCmd() *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "mrsigner",
		Short: "Print MRSIGNER (SHA-256 of the little-endian modulus) of an enclave signing key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := enclave.LoadSigningKey(keyPath)
			if err != nil {
				return err
			}
			mr := enclave.MRSigner(&key.PublicKey)
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%x\n", mr[:])
			return err
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "enclave-key.pem", "enclave signing key (PEM)")
	return cmd
}

// manifestFile is the YAML form of enclave.ManifestConfig for --config.
type manifestFile struct {
	Entrypoint        string            `yaml:"entrypoint"`
	LibOSPath         string            `yaml:"libos_path"`
	LogLevel          string            `yaml:"log_level"`
	Env               map[string]string `yaml:"env"`
	Argv              []string          `yaml:"argv"`
	ArgvSrcFile       string            `yaml:"argv_src_file"`
	Mounts            []enclave.Mount   `yaml:"mounts"`
	EnclaveSize       string            `yaml:"enclave_size"`
	MaxThreads        int               `yaml:"max_threads"`
	ISVProdID         uint16            `yaml:"isv_prod_id"`
	ISVSVN            uint16            `yaml:"isv_svn"`
	Debug             bool              `yaml:"debug"`
	EDMM              bool              `yaml:"edmm"`
	RemoteAttestation string            `yaml:"remote_attestation"`
	TrustedFiles      []string          `yaml:"trusted_files"`
	TrustConfig       []string          `yaml:"trust_config"`
	AllowedFiles      []string          `yaml:"allowed_files"`
}

func loadManifestConfig(path string) (enclave.ManifestConfig, error) {
	data, err := yamlx.ReadFile(path, "enclave config", 0)
	if err != nil {
		return enclave.ManifestConfig{}, err
	}
	var m manifestFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil && err != io.EOF {
		return enclave.ManifestConfig{}, fmt.Errorf("enclave config %s: %s", path, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return enclave.ManifestConfig{
		Entrypoint: m.Entrypoint, LibOSPath: m.LibOSPath, LogLevel: m.LogLevel, Env: m.Env,
		Argv: m.Argv, ArgvSrcFile: m.ArgvSrcFile, Mounts: m.Mounts, EnclaveSize: m.EnclaveSize, MaxThreads: m.MaxThreads,
		ISVProdID: m.ISVProdID, ISVSVN: m.ISVSVN, Debug: m.Debug, EDMM: m.EDMM,
		RemoteAttestation: m.RemoteAttestation, TrustedFiles: m.TrustedFiles, TrustConfig: m.TrustConfig,
		AllowedFiles: m.AllowedFiles,
	}, nil
}

func newEnclaveManifestCmd() *cobra.Command {
	var configPath, out, entrypoint, argvFile, root string
	var trusted, trustConfig, allowed []string
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Write a Gramine SGX manifest with hashed trusted files for running teeml inside an enclave",
		Long: "Write a Gramine manifest (TOML). Files that decide trust (policies, plans: --trust-config)\n" +
			"always become sgx.trusted_files with their SHA-256, never sgx.allowed_files. Arguments come\n" +
			"from a trusted argv file (--argv-file), never from the untrusted host command line.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg enclave.ManifestConfig
			if configPath != "" {
				var err error
				if cfg, err = loadManifestConfig(configPath); err != nil {
					return err
				}
			}
			if entrypoint != "" {
				cfg.Entrypoint = entrypoint
			}
			if argvFile != "" {
				cfg.ArgvSrcFile = argvFile
			}
			if root != "" {
				cfg.Root = root
			}
			cfg.TrustedFiles = append(cfg.TrustedFiles, trusted...)
			cfg.TrustConfig = append(cfg.TrustConfig, trustConfig...)
			cfg.AllowedFiles = append(cfg.AllowedFiles, allowed...)
			var buf bytes.Buffer
			if err := enclave.WriteManifest(&buf, cfg); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			return atomicfile.WriteBytes(out, buf.Bytes(), 0o644)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML file with the manifest settings (entrypoint, trusted_files, trust_config, mounts, ...)")
	f.StringVar(&entrypoint, "entrypoint", "", "libos.entrypoint (path of the program inside the enclave)")
	f.StringVar(&root, "root", "", "root file system of an image: trusted paths are absolute paths inside it, hashed there and named without the root")
	f.StringVar(&argvFile, "argv-file", "", "trusted file holding the program's arguments (loader.argv_src_file)")
	f.StringArrayVar(&trusted, "trusted", nil, "trusted file or directory (repeatable; hashed)")
	f.StringArrayVar(&trustConfig, "trust-config", nil, "policy/plan file that decides trust (repeatable; always trusted)")
	f.StringArrayVar(&allowed, "allowed", nil, "allowed (unprotected) file (repeatable; only where needed)")
	f.StringVarP(&out, "out", "o", "", "manifest file (default stdout)")
	return cmd
}

func newEnclaveSignCmd() *cobra.Command {
	var manifest, key, out string
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Sign a manifest with gramine-sgx-sign (needs Gramine installed) and print the enclave identity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ss, err := enclave.SignWithGramine(cmd.Context(), manifest, key, out)
			if err != nil {
				return err
			}
			return printSigInfo(cmd.OutOrStdout(), ss.Info(), false)
		},
	}
	cmd.Flags().StringVar(&manifest, "manifest", "", "manifest written by teeml enclave manifest")
	cmd.Flags().StringVar(&key, "key", "enclave-key.pem", "enclave signing key")
	cmd.Flags().StringVarP(&out, "out", "o", "", "signed manifest output (.manifest.sgx)")
	_ = cmd.MarkFlagRequired("manifest")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func readSigstruct(path string) (*enclave.Sigstruct, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sigstruct: %w", err)
	}
	ss, err := enclave.ParseSigstruct(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ss, nil
}

func printSigInfo(w io.Writer, info enclave.SigstructInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	_, err := fmt.Fprintf(w, "mr_enclave: %s\nmr_signer: %s\nisv_prod_id: %d\nisv_svn: %d\ndebug: %v\ndate: %s\nattributes: %s\nmisc_select: %#x\n",
		info.MREnclave, info.MRSigner, info.ISVProdID, info.ISVSVN, info.Debug, info.Date, info.Attributes, info.MiscSelect)
	return err
}

func newEnclaveInspectCmd() *cobra.Command {
	var asJSON, verify bool
	cmd := &cobra.Command{
		Use:   "inspect FILE.sig",
		Short: "Print the enclave identity in a SIGSTRUCT (.sig): mr_enclave, mr_signer, isv_prod_id, isv_svn, debug",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ss, err := readSigstruct(args[0])
			if err != nil {
				return err
			}
			if verify {
				if err := ss.Verify(); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
			}
			return printSigInfo(cmd.OutOrStdout(), ss.Info(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().BoolVar(&verify, "verify", true, "check the SIGSTRUCT's RSA signature and Q1/Q2 first")
	return cmd
}

func newEnclavePolicyCmd() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "policy FILE.sig",
		Short: "Print a teeml attestation policy (YAML) accepting the enclave in a SIGSTRUCT for --role",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ss, err := readSigstruct(args[0])
			if err != nil {
				return err
			}
			if err := ss.Verify(); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			info := ss.Info()
			if info.Debug {
				return fmt.Errorf("%s: debug enclave (attributes DEBUG set): no policy is emitted for an enclave without confidentiality", args[0])
			}
			e := enclave.PolicyEntry(info)
			doc := map[string]any{"roles": map[string]any{role: map[string]any{"sgx": []enclave.AllowedEnclave{e}}}}
			enc := yaml.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent(2)
			if err := enc.Encode(doc); err != nil {
				return err
			}
			return enc.Close()
		},
	}
	cmd.Flags().StringVar(&role, "role", "collaborator", "role the enclave plays (aggregator, collaborator, leader, follower, kms)")
	return cmd
}
