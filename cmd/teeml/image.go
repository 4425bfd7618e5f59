package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/enclave"
	"github.com/teeml/teeml/image"
)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Reproducible OCI images of a teeml party (no container daemon), and their inspection"}
	cmd.AddCommand(newImageBuildCmd(), newImageInspectCmd())
	return cmd
}

func newImageBuildCmd() *cobra.Command {
	var (
		role, binary, caCerts, gramineConfig, enclaveKey, base, out, tarOut, tag, push string
		files, cmdArgs                                                                 []string
		insecure, asJSON                                                               bool
		timeout                                                                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build a reproducible OCI image: static teeml, CA certificates, the role's public files, optionally a Gramine manifest",
		Long: "Build an OCI image in Go. The same inputs give the same digest: one timestamp\n" +
			"(SOURCE_DATE_EPOCH, default the Unix epoch), sorted entries, owner 0:0, no host paths.\n" +
			"Files holding a private key are refused: identities reach a party as Kubernetes Secrets.\n" +
			"With --gramine-config the image carries a Gramine manifest whose trusted files are hashed\n" +
			"from the image itself; --enclave-key adds MRSIGNER (the key never enters the image).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" && tarOut == "" && push == "" {
				return errors.New("image build: give --out (OCI layout directory), --tar (docker tarball) or --push (registry reference)")
			}
			created, err := image.CreatedFromEnv()
			if err != nil {
				return fmt.Errorf("image build: %w", err)
			}
			if binary == "" {
				if binary, err = os.Executable(); err != nil {
					return fmt.Errorf("image build: --binary: %w", err)
				}
			}
			spec := image.Spec{Role: role, Binary: binary, CACerts: caCerts, Created: created, Cmd: cmdArgs}
			for _, f := range files {
				src, dst, _ := strings.Cut(f, "=")
				spec.Files = append(spec.Files, image.File{Src: src, Dst: dst})
			}
			if gramineConfig != "" {
				mc, err := loadManifestConfig(gramineConfig)
				if err != nil {
					return err
				}
				spec.Gramine = &image.Gramine{Config: mc}
			}
			if enclaveKey != "" {
				if spec.Gramine == nil {
					return errors.New("image build: --enclave-key needs --gramine-config (MRSIGNER signs a Gramine manifest)")
				}
				key, err := enclave.LoadSigningKey(enclaveKey)
				if err != nil {
					return err
				}
				spec.Gramine.SigningKey = &key.PublicKey
			}
			if base != "" {
				if spec.Base, err = image.Load(cmd.Context(), base, false, false); err != nil {
					return fmt.Errorf("image build: --base: %w", err)
				}
			}
			res, err := image.Build(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if out != "" {
				if err := image.WriteLayout(out, tag, res.Image); err != nil {
					return err
				}
			}
			if tarOut != "" {
				ref := tag
				if ref == "" {
					ref = "teeml/" + role + ":latest"
				}
				if err := image.WriteTarball(tarOut, ref, res.Image); err != nil {
					return err
				}
			}
			if push != "" {
				if err := image.Push(cmd.Context(), push, res.Image, timeout, insecure); err != nil {
					return err
				}
			}
			rep, err := image.Inspect(res.Image)
			if err != nil {
				return err
			}
			return printImageReport(cmd.OutOrStdout(), rep, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "the party's role (aggregator, collaborator, kms, serving, analytics, ...)")
	f.StringVar(&binary, "binary", "", "statically linked teeml binary (default: this executable)")
	f.StringVar(&caCerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to put at "+image.CACertsPath+" (\"\" for none)")
	f.StringArrayVar(&files, "file", nil, "SRC[=DST]: file or directory to put under "+image.FilesDir+" (repeatable)")
	f.StringArrayVar(&cmdArgs, "cmd", nil, "default argument after the entrypoint (repeatable, in order)")
	f.StringVar(&gramineConfig, "gramine-config", "", "YAML manifest settings (as teeml enclave manifest --config; argv required) for an SGX image")
	f.StringVar(&enclaveKey, "enclave-key", "", "enclave signing key: its MRSIGNER becomes an annotation")
	f.StringVar(&base, "base", "", "OCI layout of a base image (e.g. with Gramine installed); default: from scratch")
	f.StringVarP(&out, "out", "o", "", "write an OCI image layout directory (must not exist)")
	f.StringVar(&tarOut, "tar", "", "write a docker-save tarball (docker load, kind load, ctr import)")
	f.StringVar(&tag, "tag", "", "reference name recorded in the layout or tarball")
	f.StringVar(&push, "push", "", "push to this registry reference (credentials from the docker config)")
	f.BoolVar(&insecure, "insecure-registry", false, "allow plain HTTP to the registry (loopback test registries only)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "deadline for the push")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func newImageInspectCmd() *cobra.Command {
	var fromRegistry, insecure, asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Print an image's layers, annotations and measurements, and check them against its contents",
		Long: "IMAGE is an OCI layout directory, a docker-save tarball or (--registry) a reference.\n" +
			"The binary's and the role files' digests and every trusted file of the Gramine manifest\n" +
			"are recomputed from the merged layers; any difference fails with the file named.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if fromRegistry {
				var cancel func()
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			img, err := image.Load(ctx, args[0], fromRegistry, insecure)
			if err != nil {
				return err
			}
			rep, err := image.Inspect(img)
			if rep != nil && err != nil {
				_ = printImageReport(cmd.ErrOrStderr(), rep, asJSON)
			}
			if err != nil {
				return err
			}
			return printImageReport(cmd.OutOrStdout(), rep, asJSON)
		},
	}
	cmd.Flags().BoolVar(&fromRegistry, "registry", false, "IMAGE is a registry reference")
	cmd.Flags().BoolVar(&insecure, "insecure-registry", false, "allow plain HTTP to the registry")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "deadline for pulling from a registry")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printImageReport(w io.Writer, r *image.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "digest: %s\nconfig: %s\nplatform: %s\nentrypoint: %s\n", r.Digest, r.ConfigDigest, r.Platform, strings.Join(append(r.Entrypoint, r.Cmd...), " "))
	fmt.Fprintf(w, "user: %s\nfiles: %d\n", r.User, r.Files)
	fmt.Fprintln(w, "layers:")
	for _, l := range r.Layers {
		fmt.Fprintf(w, "  %s %d bytes  %s\n", l.Digest, l.Size, l.CreatedBy)
	}
	fmt.Fprintln(w, "annotations:")
	keys := make([]string, 0, len(r.Annotations))
	for k := range r.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, r.Annotations[k])
	}
	fmt.Fprintln(w, "checked:")
	for _, c := range r.Checks {
		fmt.Fprintf(w, "  %s\n", c)
	}
	return nil
}
