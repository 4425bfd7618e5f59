package cleanroom

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/kms"
	"github.com/teeml/teeml/pki"
	"github.com/teeml/teeml/sealed"
	sqlcleanroom "github.com/teeml/teeml/sql/cleanroom"
	"github.com/teeml/teeml/sql/engine"
)

// QueryOptions is one run of the analytics party.
type QueryOptions struct {
	Contract, Signatures string // files
	// Template names the template; or SQL gives its text, which must be a
	// template's exactly (white space aside).
	Template, SQL string
	Params        map[string]string
	Tables        map[string]string // table → sealed file
	KMS           map[string]string // owner → kms client configuration (the analytics party's)
	OutDir        string            // sealed results, one per recipient
	QueryID       string            // default: random
	Engine        engine.Options
	// Trainer trains training templates' models (cleanroomml.Trainer; the
	// CLI passes it: this package links no learning code).
	Trainer sqlcleanroom.Trainer
	Out     io.Writer
	Log     *slog.Logger
}

// ErrNotInContract: the query is not one the contract allows; no key was
// asked for.
var ErrNotInContract = errors.New("not in the contract")

func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// resolve finds the template the options name.
func resolve(c *contract.Contract, o *QueryOptions) (*contract.Template, error) {
	if o.SQL != "" {
		if o.Template != "" {
			return nil, errors.New("give a template or its SQL, not both")
		}
		names := make([]string, 0, len(c.Templates))
		for n := range c.Templates {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if squash(c.Templates[n].SQL) == squash(o.SQL) {
				return c.Templates[n], nil
			}
		}
		return nil, fmt.Errorf("contract %s: this SQL is %w (allowed templates: %s): refused before any key was asked for", c.Name, ErrNotInContract, strings.Join(names, ", "))
	}
	t, err := c.Template(o.Template)
	if err != nil {
		return nil, fmt.Errorf("%w: refused before any key was asked for (%w)", err, ErrNotInContract)
	}
	return t, nil
}

// Query runs the analytics party once: it checks the contract and its
// signatures, resolves and binds the template, asks each owner's broker for
// its key naming the query, runs it with the output rules, and seals the
// result to every recipient. It prints what was released, never the rows.
func Query(ctx context.Context, o QueryOptions) ([]string, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	raw, err := os.ReadFile(o.Contract)
	if err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	c, err := contract.Parse(raw, o.Contract)
	if err != nil {
		return nil, err
	}
	sigRaw, err := os.ReadFile(o.Signatures)
	if err != nil {
		return nil, fmt.Errorf("contract signatures: %w", err)
	}
	sigs, err := contract.ParseSignatures(sigRaw)
	if err != nil {
		return nil, err
	}
	t, err := resolve(c, &o)
	if err != nil {
		return nil, err
	}
	b, err := t.Bind(o.Params)
	if err != nil {
		return nil, err
	}
	if o.QueryID == "" {
		id := make([]byte, 8)
		rand.Read(id)
		o.QueryID = "q-" + hex.EncodeToString(id)
	}
	owners := c.OwnersOf(t)
	keys := map[string]sealed.KeySource{}
	q := &kmsv1.CleanRoomQuery{Contract: raw, Signatures: sigRaw, Template: t.Name, Params: o.Params, QueryId: o.QueryID}
	for i, owner := range owners {
		path := o.KMS[owner]
		if path == "" {
			return nil, fmt.Errorf("template %s reads owner %s's tables: give --kms %s=CONFIG (the analytics party's client configuration for %s's key broker)", t.Name, owner, owner, owner)
		}
		cfg, err := kms.LoadConfig(path)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			// The analytics party checks the owners' signatures itself
			// too: it runs nothing an owner did not approve.
			f := cfg.Files()
			fed, err := pki.LoadFederation(f.Bundle, f.Root)
			if err != nil {
				return nil, err
			}
			if _, err := contract.VerifySignatures(c, sigs, fed, time.Now()); err != nil {
				return nil, err
			}
		}
		cl, err := kms.Dial(ctx, cfg, o.Log)
		if err != nil {
			return nil, fmt.Errorf("%s's key broker: %w", owner, err)
		}
		defer cl.Close()
		keys[owner] = cl.KeySource().ForQuery(q)
	}
	fmt.Fprintf(o.Out, "query %s: template %s %s (contract %s, sha256 %.16s…)\n", o.QueryID, t.Name, b.Canonical(), c.Name, c.SHA256)
	res, err := sqlcleanroom.Run(ctx, sqlcleanroom.Request{Contract: c, Query: b, Tables: o.Tables, Keys: keys, Engine: o.Engine,
		Trainer: o.Trainer, Log: o.Log})
	if err != nil {
		return nil, err
	}
	if res.Model != nil {
		fmt.Fprintf(o.Out, "query %s: model released (%s); the training table is not", o.QueryID, res.ModelSummary)
	} else {
		fmt.Fprintf(o.Out, "query %s: %d groups released, %d suppressed (fewer than k=%d)", o.QueryID, len(res.Rows), res.Suppressed, c.MinGroupSize)
	}
	if res.Epsilon > 0 {
		fmt.Fprintf(o.Out, ", Laplace noise ε=%g on %s", res.Epsilon, strings.Join(res.Noised, ", "))
	}
	fmt.Fprintln(o.Out)
	var files []string
	for _, name := range sortedRecipients(c) {
		rel := sqlcleanroom.NewRelease(c, b, o.QueryID, name, res)
		sb, err := sqlcleanroom.Seal(rel, c.Recipients[name].PublicKey)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(o.OutDir, fmt.Sprintf("%s.%s.%s.result", o.QueryID, t.Name, name))
		if err := sqlcleanroom.WriteFile(path, sb); err != nil {
			return nil, err
		}
		files = append(files, path)
		fmt.Fprintf(o.Out, "query %s: result sealed to %s: %s\n", o.QueryID, name, path)
	}
	return files, nil
}

func sortedRecipients(c *contract.Contract) []string {
	out := make([]string, 0, len(c.Recipients))
	for n := range c.Recipients {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// OpenResult opens a sealed result as recipient with its key, for the
// contract in file contractPath.
func OpenResult(resultPath, contractPath, keyPath, recipient string) (*sqlcleanroom.Release, error) {
	raw, err := os.ReadFile(contractPath)
	if err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	k, err := LoadRecipientKey(keyPath)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(resultPath)
	if err != nil {
		return nil, fmt.Errorf("cleanroom result: %w", err)
	}
	r, err := sqlcleanroom.Open(b, k, contract.Hash(raw), recipient)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", resultPath, err)
	}
	return r, nil
}
