package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/progress"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/sealed/bigdl"
	"github.com/teeml/teeml/sealed/sealedparquet"
)

// Formats of `teeml data`.
const (
	formatSealed  = "sealed"
	formatParquet = "parquet"
	formatBigDL   = "bigdl-cbc"
)

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Encrypt, decrypt and inspect data at rest (sealed files, encrypted Parquet, BigDL PPML .cbc migration)",
		Long: "Data at rest is encrypted with authenticated encryption under data keys from a key source:\n" +
			"the attested key broker (--kms CONFIG, a client configuration as written by `teeml kms setup-sim`:\n" +
			"keys are released over RA-TLS only if this client satisfies the key's release policy) or, for tests\n" +
			"and simulation,\n" +
			"a local key file (--key-file, created by `teeml data keygen`), which is announced as SIMULATION.",
	}
	cmd.AddCommand(newDataKeygenCmd(), newDataEncryptCmd(), newDataDecryptCmd(), newDataInspectCmd())
	return cmd
}

// keyFlags are the key-source flags shared by the data commands.
type keyFlags struct {
	kms     string
	keyFile string
	keyID   string
	client  *kms.Client // dialled by source when --kms is given; closed by close
	// bannerToStderr sends the simulation banner to stderr (for commands
	// whose stdout is data, such as predict).
	bannerToStderr bool
}

func (k *keyFlags) register(cmd *cobra.Command, keyHelp string) {
	cmd.Flags().StringVar(&k.kms, "kms", "", "client configuration `FILE` of the attested key broker (as written by 'teeml kms setup-sim'; RA-TLS, audited)")
	cmd.Flags().StringVar(&k.keyFile, "key-file", "", "local key `FILE` made by 'teeml data keygen' (SIMULATION: not attested key release)")
	if keyHelp != "" {
		cmd.Flags().StringVar(&k.keyID, "key", "", keyHelp)
	}
}

// source returns the key source the flags name and announces simulation.
func (k *keyFlags) source(cmd *cobra.Command) (sealed.KeySource, error) {
	switch {
	case k.kms != "" && k.keyFile != "":
		return nil, errors.New("give --kms or --key-file, not both")
	case k.kms != "":
		cfg, err := kms.LoadConfig(k.kms)
		if err != nil {
			return nil, err
		}
		c, err := kms.Dial(cmd.Context(), cfg, slog.Default())
		if err != nil {
			return nil, err
		}
		if c.Simulated {
			fmt.Fprintf(cmd.ErrOrStderr(), "*** %s ***\n", sim.Banner)
		}
		k.client = c
		return c.KeySource(), nil
	case k.keyFile == "":
		return nil, errors.New("no key source: give --key-file FILE (simulation) or --kms CONFIG")
	}
	l, err := sealed.LoadKeyFile(k.keyFile)
	if err != nil {
		return nil, err
	}
	slog.Warn(sealed.SimulationBanner, "key_file", k.keyFile)
	w := cmd.OutOrStdout()
	if k.bannerToStderr {
		w = cmd.ErrOrStderr()
	}
	fmt.Fprintln(w, sealed.SimulationBanner)
	return l, nil
}

// close closes the broker connection source opened, if any.
func (k *keyFlags) close() {
	if k.client != nil {
		k.client.Close()
		k.client = nil
	}
}

// defaultKeyID picks the key ID to encrypt under: --key, or the only key in
// a key file.
func (k *keyFlags) defaultKeyID(ks sealed.KeySource) (string, error) {
	if k.keyID != "" {
		return k.keyID, nil
	}
	if l, ok := ks.(*sealed.LocalKeys); ok {
		if ids := l.KeyIDs(); len(ids) == 1 {
			return ids[0], nil
		}
		return "", fmt.Errorf("key file %s holds several keys (%s): name one with --key", k.keyFile, strings.Join(l.KeyIDs(), ", "))
	}
	return "", errors.New("--key ID is required")
}

func newDataKeygenCmd() *cobra.Command {
	var out, id string
	var add bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create a local key file for SIMULATION (no attested key release; anyone with the file can decrypt)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if add {
				if err := sealed.AddKeyToFile(out, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "added key %q to %s (%s)\n", id, out, sealed.SimulationBanner)
				return nil
			}
			if err := sealed.GenerateKeyFile(out, id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s with key %q (%s)\n", out, id, sealed.SimulationBanner)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "key-file", "", "key file to create (mode 0600; never overwritten)")
	cmd.Flags().StringVar(&id, "key", "", "key ID")
	cmd.Flags().BoolVar(&add, "add", false, "add the key to an existing key file (existing keys are kept)")
	cmd.MarkFlagRequired("key-file")
	cmd.MarkFlagRequired("key")
	return cmd
}

// progressFor returns a bytes progress callback drawing on stderr when it is
// a terminal, in MiB.
func progressFor(label string, total int64) (func(int64), func()) {
	bar := progress.New(os.Stderr, label+" (MiB)", int(total>>20), progress.IsTerminal(os.Stderr))
	return func(n int64) { bar.Set(int(n >> 20)) }, bar.Finish
}

func fileSize(path string) int64 {
	if st, err := os.Stat(path); err == nil {
		return st.Size()
	}
	return 0
}

func newDataEncryptCmd() *cobra.Command {
	var k keyFlags
	var in, out, format string
	var segment int
	var columnKeys map[string]string
	cmd := &cobra.Command{
		Use:   "encrypt",
		Short: "Encrypt a file into a sealed file (any content) or encrypted Parquet (from CSV)",
		Long: "encrypt --format sealed (default) streams any file into teeml's sealed format: Tink streaming AEAD\n" +
			"AES256-GCM-HKDF in 1 MiB segments under a fresh data key wrapped by the key source.\n" +
			"The output appears only when complete (temporary file + fsync + rename).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if in == "" || out == "" {
				return errors.New("--in and --out are required")
			}
			ks, err := k.source(cmd)
			if err != nil {
				return err
			}
			defer k.close()
			keyID, err := k.defaultKeyID(ks)
			if err != nil {
				return err
			}
			switch format {
			case formatSealed:
				set, done := progressFor("encrypt", fileSize(in))
				h, n, err := sealed.EncryptFile(cmd.Context(), in, out, ks, keyID, &sealed.Options{SegmentSize: segment, Progress: set})
				done()
				if err != nil {
					return fmt.Errorf("encrypt %s: %w", in, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "sealed %s -> %s: %d plaintext bytes, key %q, %s, %d-byte segments\n", in, out, n, h.KeyID, h.Algorithm, h.SegmentSize)
				return nil
			case formatParquet:
				return encryptParquet(cmd, ks, sealedparquet.Keys{Default: keyID, Columns: columnKeys}, in, out)
			case formatBigDL:
				return errors.New("--format bigdl-cbc is read-only (migration): teeml does not write BigDL's unauthenticated-header format")
			}
			return fmt.Errorf("--format %q: want %s or %s", format, formatSealed, formatParquet)
		},
	}
	k.register(cmd, "key ID to encrypt under (default: the only key in --key-file)")
	cmd.Flags().StringVar(&in, "in", "", "input file (- for standard input with --format sealed)")
	cmd.Flags().StringVar(&out, "out", "", "output file")
	cmd.Flags().StringVar(&format, "format", formatSealed, "sealed or parquet (input CSV)")
	cmd.Flags().IntVar(&segment, "segment-size", sealed.DefaultSegmentSize, "sealed: ciphertext segment size in bytes")
	cmd.Flags().StringToStringVar(&columnKeys, "column-key", nil, "parquet: COLUMN=KEY_ID to protect a column under another key (repeatable); the footer and other columns use --key")
	return cmd
}

func newDataDecryptCmd() *cobra.Command {
	var k keyFlags
	var in, out, format string
	cmd := &cobra.Command{
		Use:   "decrypt",
		Short: "Decrypt a sealed file, encrypted Parquet (to CSV) or a BigDL PPML .cbc file; nothing is written unless it authenticates",
		Long: "decrypt writes to a temporary file next to --out and renames it only after the whole input\n" +
			"authenticated; on any error (truncation, modification, wrong key) no output is left behind.\n" +
			"--format bigdl-cbc migrates BigDL PPML AES-CBC files: --key FILE is BigDL's plaintext data key;\n" +
			"the HMAC-SHA256 tag is verified (BigDL's own reader never rejects a bad tag). Re-seal the result.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if in == "" || out == "" {
				return errors.New("--in and --out are required")
			}
			switch format {
			case formatBigDL:
				if k.keyID == "" {
					return errors.New("--format bigdl-cbc needs --key FILE holding BigDL's plaintext data key")
				}
				key, err := bigdl.LoadDataKey(k.keyID)
				if err != nil {
					return err
				}
				h, n, err := bigdl.DecryptFile(cmd.Context(), in, out, key)
				if err != nil {
					return fmt.Errorf("decrypt %s: %w", in, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "decrypted BigDL PPML file %s -> %s: %d bytes, HMAC-SHA256 tag verified (the IV and header are not covered by BigDL's tag; re-seal with `teeml data encrypt`); wrapped data key %q\n", in, out, n, h.EncryptedDataKey)
				return nil
			case formatSealed, formatParquet:
			default:
				return fmt.Errorf("--format %q: want %s, %s or %s", format, formatSealed, formatParquet, formatBigDL)
			}
			ks, err := k.source(cmd)
			if err != nil {
				return err
			}
			defer k.close()
			if format == formatParquet {
				return decryptParquet(cmd, ks, in, out)
			}
			set, done := progressFor("decrypt", fileSize(in))
			h, n, err := sealed.DecryptFile(cmd.Context(), in, out, ks, &sealed.Options{Progress: set})
			done()
			if err != nil {
				return fmt.Errorf("decrypt %s: %w", in, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "decrypted %s -> %s: %d bytes, every segment authenticated, key %q\n", in, out, n, h.KeyID)
			return nil
		},
	}
	k.register(cmd, "sealed/parquet: unused (the key ID is in the file); bigdl-cbc: FILE holding BigDL's plaintext data key")
	cmd.Flags().StringVar(&in, "in", "", "input file")
	cmd.Flags().StringVar(&out, "out", "", "output file (CSV for parquet)")
	cmd.Flags().StringVar(&format, "format", formatSealed, "sealed, parquet or bigdl-cbc")
	return cmd
}

// inspectReport is what `data inspect --json` prints.
type inspectReport struct {
	File   string `json:"file"`
	Format string `json:"format"`
	Size   int64  `json:"size_bytes"`
	// Sealed files.
	Version       int    `json:"version,omitempty"`
	Algorithm     string `json:"algorithm,omitempty"`
	KeyID         string `json:"key_id,omitempty"`
	WrappedKey    string `json:"wrapped_key_base64,omitempty"`
	WrappedLen    int    `json:"wrapped_key_bytes,omitempty"`
	SegmentSize   int    `json:"segment_size,omitempty"`
	Segments      int64  `json:"segments,omitempty"`
	HeaderLen     int    `json:"header_bytes,omitempty"`
	PlaintextSize *int64 `json:"plaintext_bytes,omitempty"`
	// BigDL files.
	EncryptedDataKey string `json:"bigdl_encrypted_data_key,omitempty"`
	IV               string `json:"bigdl_iv_base64,omitempty"`
	// Parquet files.
	Parquet *parquetReport `json:"parquet,omitempty"`
	Note    string         `json:"note"`
}

func newDataInspectCmd() *cobra.Command {
	var k keyFlags
	var format string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show a file's encryption header or footer (key IDs, algorithm, segment size, sizes) without decrypting data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if format == "" {
				f, err := detectFormat(path)
				if err != nil {
					return err
				}
				format = f
			}
			rep := inspectReport{File: path, Format: format, Size: fileSize(path)}
			switch format {
			case formatSealed:
				info, err := sealed.Inspect(path)
				if err != nil {
					return err
				}
				h := info.Header
				rep.Version, rep.Algorithm, rep.KeyID, rep.SegmentSize = sealed.Version, h.Algorithm.String(), h.KeyID, h.SegmentSize
				rep.WrappedKey, rep.WrappedLen = base64.StdEncoding.EncodeToString(h.Wrapped), len(h.Wrapped)
				rep.Segments, rep.HeaderLen = info.Segments, info.HeaderLen
				if info.Segments > 0 && info.StreamHeaderOK {
					rep.PlaintextSize = &info.PlaintextSize
				}
				rep.Note = "header parsed; nothing authenticated (sizes assume the file is intact)"
			case formatBigDL:
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				h, n, err := bigdl.Inspect(f, rep.Size)
				if err != nil {
					return err
				}
				rep.EncryptedDataKey, rep.IV = h.EncryptedDataKey, base64.StdEncoding.EncodeToString(h.IV)
				rep.Algorithm = "AES-128-CBC + HMAC-SHA256 over the ciphertext (BigDL PPML); header and IV not authenticated"
				plain := n // upper bound: padding is 1-16 bytes
				rep.PlaintextSize = &plain
				rep.Note = "plaintext size is an upper bound (1-16 bytes of PKCS#5 padding); nothing authenticated"
			case formatParquet:
				var ks sealed.KeySource
				if k.keyFile != "" || k.kms != "" {
					var err error
					if ks, err = k.source(cmd); err != nil {
						return err
					}
					defer k.close()
				}
				pr, err := inspectParquet(cmd, path, ks)
				if err != nil {
					return err
				}
				rep.Parquet = pr
				rep.Note = pr.Note
			default:
				return fmt.Errorf("--format %q: want %s, %s or %s", format, formatSealed, formatParquet, formatBigDL)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printInspect(cmd.OutOrStdout(), &rep)
			return nil
		},
	}
	k.register(cmd, "") // keys only to decrypt an encrypted Parquet footer
	cmd.Flags().StringVar(&format, "format", "", "sealed, parquet or bigdl-cbc (default: detected from the file's magic bytes)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

// detectFormat recognises sealed files and Parquet (plaintext or encrypted
// footer) by magic bytes; the Parquet reader then checks both magics. BigDL's
// .cbc files have no magic; they must be named with --format.
func detectFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, len(sealed.Magic))
	n, _ := io.ReadFull(f, head)
	if n == len(head) && string(head) == sealed.Magic {
		return formatSealed, nil
	}
	if sealedparquet.Magic(head[:n]) { // PAR1, or PARE: encrypted footer
		return formatParquet, nil
	}
	return "", fmt.Errorf("%s: neither a sealed file nor Parquet (for BigDL PPML files give --format bigdl-cbc)", path)
}

func printInspect(w io.Writer, r *inspectReport) {
	fmt.Fprintf(w, "file:        %s\nformat:      %s\nsize:        %d bytes\n", r.File, r.Format, r.Size)
	switch r.Format {
	case formatSealed:
		fmt.Fprintf(w, "version:     %d\nalgorithm:   %s\nkey ID:      %s\nwrapped key: %d bytes\nheader:      %d bytes\nsegments:    %d x %d bytes\n",
			r.Version, r.Algorithm, r.KeyID, r.WrappedLen, r.HeaderLen, r.Segments, r.SegmentSize)
	case formatBigDL:
		fmt.Fprintf(w, "algorithm:   %s\nBigDL wrapped data key: %s\nIV:          %s\n", r.Algorithm, r.EncryptedDataKey, r.IV)
	case formatParquet:
		printParquetReport(w, r.Parquet)
	}
	if r.PlaintextSize != nil {
		fmt.Fprintf(w, "plaintext:   %d bytes\n", *r.PlaintextSize)
	}
	fmt.Fprintf(w, "note:        %s\n", r.Note)
}

// parquetReport is the Parquet part of `data inspect`.
type parquetReport struct {
	*sealedparquet.Info
	Note string `json:"-"`
}

func encryptParquet(cmd *cobra.Command, ks sealed.KeySource, keys sealedparquet.Keys, in, out string) error {
	rows, err := sealedparquet.CSVToParquet(cmd.Context(), in, out, ks, sealedparquet.WriteOptions{Keys: keys})
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "encrypted Parquet %s -> %s: %d rows, encrypted footer, one data key per column and for the footer under key %q", in, out, rows, keys.Default)
	for _, c := range slices.Sorted(maps.Keys(keys.Columns)) {
		fmt.Fprintf(cmd.OutOrStdout(), ", column %q under key %q", c, keys.Columns[c])
	}
	fmt.Fprintln(cmd.OutOrStdout())
	return nil
}

func decryptParquet(cmd *cobra.Command, ks sealed.KeySource, in, out string) error {
	rows, encrypted, err := sealedparquet.ParquetToCSV(cmd.Context(), in, out, ks)
	if err != nil {
		return err
	}
	what := "decrypted encrypted"
	if !encrypted {
		what = "converted PLAINTEXT (not encrypted)"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s Parquet %s -> %s: %d rows\n", what, in, out, rows)
	return nil
}

func inspectParquet(cmd *cobra.Command, path string, ks sealed.KeySource) (*parquetReport, error) {
	info, err := sealedparquet.Inspect(cmd.Context(), path, ks)
	if err != nil {
		return nil, err
	}
	r := &parquetReport{Info: info}
	switch {
	case !info.Encrypted:
		r.Note = "PLAINTEXT Parquet: no modular encryption"
	case info.FooterDecoded:
		r.Note = "footer decrypted and authenticated with the key source; no column data was read"
	default:
		r.Note = "encrypted footer not decrypted (give --key-file or --kms to list columns and their keys)"
	}
	return r, nil
}

func printParquetReport(w io.Writer, r *parquetReport) {
	fmt.Fprintf(w, "encrypted:   %v\n", r.Encrypted)
	if r.Encrypted {
		fmt.Fprintf(w, "algorithm:   %s\nfooter key:  %s\n", r.Algorithm, r.FooterKeyID)
	}
	fmt.Fprintf(w, "footer:      %d bytes\n", r.FooterLenBytes)
	if r.FooterDecoded {
		fmt.Fprintf(w, "rows:        %d in %d row groups\n", r.Rows, r.RowGroups)
		for _, c := range r.Columns {
			if c.KeyError != "" {
				fmt.Fprintf(w, "column:      %s (encrypted, key %s: %s)\n", c.Column, c.KeyID, c.KeyError)
			} else if c.Encrypted {
				fmt.Fprintf(w, "column:      %s (encrypted, key %s)\n", c.Column, c.KeyID)
			} else {
				fmt.Fprintf(w, "column:      %s (PLAINTEXT)\n", c.Column)
			}
		}
	}
}
