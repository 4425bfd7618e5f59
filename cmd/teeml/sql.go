package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/internal/progress"
	"github.com/teeml/teeml/sql/engine"
	sqlrun "github.com/teeml/teeml/sql/run"
	"github.com/teeml/teeml/sql/tables"
	"github.com/teeml/teeml/sql/tpch"
)

func newSQLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sql",
		Short: "SQL on sealed tables inside the attested party (DuckDB; nothing plaintext on disk)",
		Long: "SQL on sealed tables, decrypted in memory only, in a DuckDB session that cannot spill to disk,\n" +
			"read or write files, or load extensions (docs/analytics.md).",
	}
	cmd.AddCommand(newSQLRunCmd(), newSQLTPCHCmd())
	return cmd
}

type engineFlags struct {
	memory  string
	threads int
}

func (f *engineFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.memory, "memory-limit", "", "DuckDB memory limit such as 8GB (default: DuckDB's, 80% of RAM); a query that needs more fails: nothing spills to disk")
	cmd.Flags().IntVar(&f.threads, "threads", 0, "DuckDB threads (0: all cores)")
}

func (f *engineFlags) options() engine.Options {
	return engine.Options{MemoryLimit: f.memory, Threads: f.threads, Log: slog.Default()}
}

func newSQLRunCmd() *cobra.Command {
	var k keyFlags
	var e engineFlags
	var specs []string
	var query, out string
	var allowPlain bool
	cmd := &cobra.Command{
		Use:   "run --table name=path[:sealed|parquet|csv] ... --query SQL [--key-file F | --kms CONFIG] [--out F.sealed]",
		Short: "run one SELECT over sealed CSV or encrypted Parquet tables (plaintext only with --allow-plaintext)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(specs) == 0 {
				return errors.New("give at least one --table name=path")
			}
			req := sqlrun.Request{Query: query, Policy: tables.Policy{AllowPlaintext: allowPlain}, Engine: e.options(), Log: slog.Default()}
			for _, s := range specs {
				sp, err := tables.ParseSpec(s)
				if err != nil {
					return err
				}
				req.Tables = append(req.Tables, sp)
			}
			if k.keyFile != "" || k.kms != "" {
				k.bannerToStderr = true
				ks, err := k.source(cmd)
				if err != nil {
					return err
				}
				defer k.close()
				req.Keys = ks
			} else if out != "" {
				return errors.New("--out writes the result sealed: give --key-file or --kms")
			}
			res, st, err := sqlrun.Query(cmd.Context(), req)
			if err != nil {
				return err
			}
			names := make([]string, 0, len(st.Rows))
			for n := range st.Rows {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(cmd.ErrOrStderr(), "table %s: %d rows\n", n, st.Rows[n])
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "load %.3fs, query %.3fs, %d result rows\n", st.Load.Seconds(), st.Query.Seconds(), len(res.Rows))
			if out == "" {
				return sqlrun.WriteCSV(cmd.OutOrStdout(), res)
			}
			id, err := k.defaultKeyID(req.Keys)
			if err != nil {
				return err
			}
			if err := sqlrun.WriteSealed(cmd.Context(), out, req.Keys, id, res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "result sealed under key %s: %s\n", id, out)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&specs, "table", nil, "table `name=path[:sealed|parquet|csv]` (repeatable; format detected when omitted)")
	cmd.Flags().StringVar(&query, "query", "", "the SQL query")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the result as sealed CSV to `FILE` instead of printing it")
	cmd.Flags().BoolVar(&allowPlain, "allow-plaintext", false, "admit plaintext CSV and unencrypted Parquet tables (refused by default)")
	k.register(cmd, "key ID to seal --out under (default: the only key in --key-file)")
	e.register(cmd)
	cmd.MarkFlagRequired("query")
	return cmd
}

func newSQLTPCHCmd() *cobra.Command {
	var k keyFlags
	var e engineFlags
	var sf, limit int64
	var rounds int
	var encrypted bool
	var dir string
	cmd := &cobra.Command{
		Use:   "tpch --sf N [--encrypted] [--dir D] [--key-file F | --kms CONFIG]",
		Short: "generate TPC-H, run the 22 queries on plaintext and (with --encrypted) sealed tables, check the answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opt := tpch.BenchOptions{SF: sf, Limit: limit, Rounds: rounds, Encrypted: encrypted, Engine: e.options(), Log: slog.Default()}
			if encrypted {
				if k.keyFile != "" || k.kms != "" {
					ks, err := k.source(cmd)
					if err != nil {
						return err
					}
					defer k.close()
					id, err := k.defaultKeyID(ks)
					if err != nil {
						return err
					}
					opt.Keys, opt.KeyID = ks, id
				} else {
					ks, id, err := tpch.EphemeralKeys()
					if err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), tpch.EphemeralBanner)
					slog.Warn(tpch.EphemeralBanner)
					opt.Keys, opt.KeyID = ks, id
				}
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "teeml-tpch-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			opt.Dir = dir
			bar := progress.New(os.Stderr, "generating tables", len(tpch.Tables), progress.IsTerminal(os.Stderr))
			opt.Progress = func(done, _ int) { bar.Set(done) }
			rep, err := tpch.Bench(cmd.Context(), opt)
			bar.Finish()
			if err != nil {
				return err
			}
			rep.Print(cmd.OutOrStdout())
			if rep.Correct != rep.Verified {
				return fmt.Errorf("tpch: %d of %d checked queries wrong", rep.Verified-rep.Correct, rep.Verified)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&sf, "sf", 1, "TPC-H scale factor (whole number)")
	cmd.Flags().Int64Var(&limit, "limit", 0, "keep only the first N rows of supplier, customer, part, orders (a consistent prefix; for quick runs)")
	cmd.Flags().IntVar(&rounds, "rounds", 1, "run each copy this many times (alternating which goes first) and keep each step's fastest time")
	cmd.Flags().BoolVar(&encrypted, "encrypted", false, "also seal the tables as they are generated and run the queries on the sealed copy")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the generated tables (default: a temporary directory, removed after)")
	k.register(cmd, "key ID to seal under (default: the only key in --key-file)")
	e.register(cmd)
	return cmd
}
