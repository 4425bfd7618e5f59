// Package contract is teeml's data clean-room contract: the one document
// every data owner signs and the key broker, the analytics party and the
// owners all read. It names the tables and their owners, which attested
// code may run the analytics, the query templates that may run (SQL text
// with typed parameters), the output rules (aggregates only, a minimum
// group size k, optional Laplace noise with a per-owner ε budget) and who
// receives the results.
//
// The flow follows the rest of teeml: Parse (bytes → Contract, strict,
// errors file:line: key: reason), VerifySignatures (every owner signed the
// exact bytes with its federation identity), Template.Bind (caller's
// parameter values → typed values the engine binds; nothing is spliced into
// the SQL text). A contract is identified by the SHA-256 of its bytes as
// signed: changing one byte makes it another contract, which no owner's key
// is bound to.
package contract

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/internal/yamlx"
	"github.com/teeml/teeml/pki"
)

// MaxSize bounds a contract file.
const MaxSize = 1 << 20

// AnalyticsRole is the attest/policy role the contract's analytics
// attestation is parsed as.
const AnalyticsRole = "analytics"

// ErrContract marks every parse and validation error.
var ErrContract = errors.New("contract")

// Contract is a parsed, validated contract.
type Contract struct {
	Name string
	// MinGroupSize is k: result rows whose group-size column is below it
	// are suppressed.
	MinGroupSize int
	Owners       map[string]Owner // by federation member name
	Tables       map[string]Table // by table name (a SQL identifier)
	Analytics    Analytics
	// Recipients are the members that receive results, each with the HPKE
	// (DHKEM P-256) public key results are sealed to.
	Recipients map[string]Recipient
	Templates  map[string]*Template

	// Raw is the contract as given (and signed); SHA256 its hash, hex.
	Raw    []byte
	SHA256 string
}

// Owner is a data owner.
type Owner struct {
	// Key is the key ID, at the owner's key broker, its tables are sealed
	// under.
	Key string
	// Epsilon is the owner's total differential-privacy budget under this
	// contract (0: no noised template may touch its tables).
	Epsilon float64
}

// Table is one owner's table.
type Table struct {
	Name  string
	Owner string
	// Columns maps lower-case column names to DuckDB types.
	Columns map[string]string
}

// Analytics is who may run the queries: federation members by name whose
// attestation satisfies Policy's role AnalyticsRole.
type Analytics struct {
	Members []string
	Policy  *policy.Policy
}

// Recipient receives results sealed to its public key.
type Recipient struct {
	Name      string
	PublicKey *ecdh.PublicKey
}

// Template is an allowed query.
type Template struct {
	Name   string
	SQL    string
	Tables []string // the tables it reads (the only ones loaded, the only keys asked for)
	Params []Param  // in name order
	// GroupSize is the result column holding each row's group size,
	// compared with the contract's MinGroupSize.
	GroupSize string
	// Noise, when set, adds Laplace noise to columns and spends Epsilon of
	// every owner whose tables the template reads.
	Noise *Noise
	// Train, when set, makes the template a training template ("release:
	// model"): its result is the training table, which never leaves the
	// analytics party; only the tree model trained on it is released.
	Train *Train
}

// Train is a training template's model (docs/classical-ml.md): a random
// forest or GBDT on the result's columns, Label the target. MinLeaf ≥ the
// contract's min_group_size: every leaf of the released model summarises
// at least k joined rows, the tree analogue of suppressing small groups.
type Train struct {
	Model     string // "rf" or "gbdt"
	Label     string // result column: the target (classes: its distinct values)
	Task      string // "classification" or "regression"
	Trees     int    // rf trees, gbdt rounds (1..10000)
	NumLeaves int    // gbdt (0: 31)
	MaxDepth  int    // 0: unbounded
	MinLeaf   int    // ≥ min_group_size (0: min_group_size)
	LR        float64
	Lambda    float64
}

// Noise is a template's differential-privacy mechanism.
type Noise struct {
	Epsilon float64
	Columns []NoiseColumn // in name order
}

// Noise column kinds.
const (
	Count = "count" // sensitivity 1
	Sum   = "sum"   // sensitivity Bound (the SQL must clip each value to [-Bound, Bound])
)

// NoiseColumn is one noised result column.
type NoiseColumn struct {
	Name  string
	Kind  string
	Bound float64
}

// Sensitivity is the column's L1 sensitivity.
func (n NoiseColumn) Sensitivity() float64 {
	if n.Kind == Count {
		return 1
	}
	return n.Bound
}

// Owners of t: the owners whose tables t reads, sorted.
func (c *Contract) OwnersOf(t *Template) []string {
	var out []string
	for _, name := range t.Tables {
		o := c.Tables[name].Owner
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out
}

// OwnerOfKey returns the owner whose tables are sealed under keyID.
func (c *Contract) OwnerOfKey(keyID string) (string, bool) {
	for _, n := range sortedKeys(c.Owners) {
		if c.Owners[n].Key == keyID {
			return n, true
		}
	}
	return "", false
}

// Template returns the named template, or an error naming the ones the
// contract allows.
func (c *Contract) Template(name string) (*Template, error) {
	if t, ok := c.Templates[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("%w %s: template %q is not in the contract (allowed: %s)", ErrContract, c.Name, name, strings.Join(sortedKeys(c.Templates), ", "))
}

// Hash is the SHA-256 (hex) of a contract's bytes.
func Hash(raw []byte) string {
	s := sha256.Sum256(raw)
	return hex.EncodeToString(s[:])
}

// Load reads and parses a contract file.
func Load(path string) (*Contract, error) {
	b, err := yamlx.ReadFile(path, "contract", MaxSize)
	if err != nil {
		return nil, err
	}
	return Parse(b, path)
}

var (
	identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	typeRE  = regexp.MustCompile(`^(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|FLOAT|REAL|DOUBLE|DATE|TIMESTAMP|VARCHAR|DECIMAL\([0-9]{1,2},[0-9]{1,2}\))$`)
)

type doc struct {
	Contract     string                  `yaml:"contract"`
	MinGroupSize int                     `yaml:"min_group_size"`
	Owners       map[string]ownerDoc     `yaml:"owners"`
	Tables       map[string]tableDoc     `yaml:"tables"`
	Analytics    analyticsDoc            `yaml:"analytics"`
	Recipients   map[string]recipientDoc `yaml:"recipients"`
	Templates    map[string]templateDoc  `yaml:"templates"`
}

type ownerDoc struct {
	Key     string  `yaml:"key"`
	Epsilon float64 `yaml:"epsilon"`
}

type tableDoc struct {
	Owner   string            `yaml:"owner"`
	Columns map[string]string `yaml:"columns"`
}

type analyticsDoc struct {
	Members     []string  `yaml:"members"`
	Attestation yaml.Node `yaml:"attestation"`
}

type recipientDoc struct {
	HPKEP256 string `yaml:"hpke_p256"`
}

type templateDoc struct {
	Tables    []string            `yaml:"tables"`
	Params    map[string]paramDoc `yaml:"params"`
	GroupSize string              `yaml:"group_size"`
	Noise     *noiseDoc           `yaml:"noise"`
	Train     *trainDoc           `yaml:"train"`
	SQL       string              `yaml:"sql"`
}

type trainDoc struct {
	Model     string  `yaml:"model"`
	Label     string  `yaml:"label"`
	Task      string  `yaml:"task"`
	Trees     int     `yaml:"trees"`
	NumLeaves int     `yaml:"num_leaves"`
	MaxDepth  int     `yaml:"max_depth"`
	MinLeaf   int     `yaml:"min_leaf"`
	LR        float64 `yaml:"lr"`
	Lambda    float64 `yaml:"lambda"`
}

type noiseDoc struct {
	Epsilon float64                   `yaml:"epsilon"`
	Columns map[string]noiseColumnDoc `yaml:"columns"`
}

type noiseColumnDoc struct {
	Kind  string  `yaml:"kind"`
	Bound float64 `yaml:"bound"`
}

type paramDoc struct {
	Type   string   `yaml:"type"`
	Min    *float64 `yaml:"min"`
	Max    *float64 `yaml:"max"`
	Enum   []string `yaml:"enum"`
	MaxLen int      `yaml:"max_len"`
}

// Parse parses and validates a contract; file names it in errors.
func Parse(raw []byte, file string) (*Contract, error) {
	var d doc
	lines, err := yamlx.Decode(raw, file, "contract", MaxSize, &d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrContract, err)
	}
	p := &parser{file: file, lines: lines}
	c, err := p.contract(&d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrContract, err)
	}
	c.Raw = slices.Clone(raw)
	c.SHA256 = Hash(raw)
	return c, nil
}

type parser struct {
	file  string
	lines map[string]int
}

func (p *parser) errf(key, format string, args ...any) error {
	w := yamlx.Walker{File: p.file, Lines: p.lines}
	return yamlx.Errorf(p.file, w.Line(key), key, format, args...)
}

func (p *parser) contract(d *doc) (*Contract, error) {
	if err := pki.CheckName(d.Contract); err != nil {
		return nil, p.errf("contract", "the contract's name: %w", err)
	}
	if d.MinGroupSize < 1 {
		return nil, p.errf("min_group_size", "must be at least 1 (the smallest group a result may show), got %d", d.MinGroupSize)
	}
	c := &Contract{Name: d.Contract, MinGroupSize: d.MinGroupSize, Owners: map[string]Owner{}, Tables: map[string]Table{},
		Recipients: map[string]Recipient{}, Templates: map[string]*Template{}}
	if len(d.Owners) == 0 {
		return nil, p.errf("owners", "missing: a contract needs at least one data owner")
	}
	keys := map[string]string{}
	for _, name := range sortedKeys(d.Owners) {
		o, key := d.Owners[name], "owners."+yamlx.KeyName(name)
		if err := pki.CheckName(name); err != nil {
			return nil, p.errf(key, "owner: %w", err)
		}
		if o.Key == "" {
			return nil, p.errf(key+".key", "missing (the key ID the owner's tables are sealed under)")
		}
		if prev, dup := keys[o.Key]; dup {
			return nil, p.errf(key+".key", "key %q is also owner %s's: each owner seals under its own key", o.Key, prev)
		}
		keys[o.Key] = name
		if !finite(o.Epsilon) || o.Epsilon < 0 {
			return nil, p.errf(key+".epsilon", "must be a finite number ≥ 0, got %v", o.Epsilon)
		}
		c.Owners[name] = Owner{Key: o.Key, Epsilon: o.Epsilon}
	}
	if len(d.Tables) == 0 {
		return nil, p.errf("tables", "missing: a contract needs at least one table")
	}
	for _, name := range sortedKeys(d.Tables) {
		t, key := d.Tables[name], "tables."+yamlx.KeyName(name)
		if !identRE.MatchString(name) {
			return nil, p.errf(key, "table name must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
		}
		if _, ok := c.Owners[t.Owner]; !ok {
			return nil, p.errf(key+".owner", "%q is not one of the owners (%s)", t.Owner, strings.Join(sortedKeys(c.Owners), ", "))
		}
		if len(t.Columns) == 0 {
			return nil, p.errf(key+".columns", "missing: the table's columns and their DuckDB types")
		}
		cols := map[string]string{}
		for _, cn := range sortedKeys(t.Columns) {
			typ := strings.ToUpper(strings.TrimSpace(t.Columns[cn]))
			if !identRE.MatchString(cn) {
				return nil, p.errf(key+".columns."+yamlx.KeyName(cn), "column name must be a lower-case SQL identifier")
			}
			if !typeRE.MatchString(typ) {
				return nil, p.errf(key+".columns."+cn, "type %q: want one of BOOLEAN, INTEGER, BIGINT, DOUBLE, DECIMAL(p,s), DATE, TIMESTAMP, VARCHAR", t.Columns[cn])
			}
			cols[cn] = typ
		}
		c.Tables[name] = Table{Name: name, Owner: t.Owner, Columns: cols}
	}
	for _, o := range sortedKeys(c.Owners) {
		has := false
		for _, t := range c.Tables {
			has = has || t.Owner == o
		}
		if !has {
			return nil, p.errf("owners."+o, "owner has no table")
		}
	}
	if err := p.analytics(c, &d.Analytics); err != nil {
		return nil, err
	}
	if len(d.Recipients) == 0 {
		return nil, p.errf("recipients", "missing: who receives the results")
	}
	for _, name := range sortedKeys(d.Recipients) {
		key := "recipients." + yamlx.KeyName(name)
		if err := pki.CheckName(name); err != nil {
			return nil, p.errf(key, "recipient: %w", err)
		}
		b, err := hex.DecodeString(d.Recipients[name].HPKEP256)
		if err != nil || len(b) == 0 {
			return nil, p.errf(key+".hpke_p256", "want the recipient's P-256 public key, hex (teeml cleanroom keygen)")
		}
		pub, err := ecdh.P256().NewPublicKey(b)
		if err != nil {
			return nil, p.errf(key+".hpke_p256", "not a P-256 public key: %w", err)
		}
		c.Recipients[name] = Recipient{Name: name, PublicKey: pub}
	}
	if len(d.Templates) == 0 {
		return nil, p.errf("templates", "missing: a contract needs at least one query template")
	}
	for _, name := range sortedKeys(d.Templates) {
		t, err := p.template(c, name, d.Templates[name])
		if err != nil {
			return nil, err
		}
		c.Templates[name] = t
	}
	return c, nil
}

func (p *parser) analytics(c *Contract, a *analyticsDoc) error {
	if len(a.Members) == 0 {
		return p.errf("analytics.members", "missing: the federation members that may run the analytics")
	}
	for _, m := range a.Members {
		if err := pki.CheckName(m); err != nil {
			return p.errf("analytics.members", "%w", err)
		}
		if _, owner := c.Owners[m]; owner {
			return p.errf("analytics.members", "%q is a data owner: the analytics party must be a separate member", m)
		}
	}
	if a.Attestation.Kind == 0 {
		return p.errf("analytics.attestation", "missing: the measurements the analytics party must run")
	}
	// Parsed by attest/policy as a one-role policy (the same schema as a
	// policy file's roles.<role>).
	wrapped := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "roles"},
		{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: AnalyticsRole}, &a.Attestation}},
	}}
	b, err := yaml.Marshal(wrapped)
	if err != nil {
		return p.errf("analytics.attestation", "%w", err)
	}
	pol, err := policy.Parse(b, p.file+" analytics.attestation")
	if err != nil {
		return err
	}
	c.Analytics = Analytics{Members: slices.Clone(a.Members), Policy: pol}
	return nil
}

// paramRef finds $name parameter references outside string literals,
// quoted identifiers and comments.
func paramRefs(sql string) []string {
	var out []string
	for i := 0; i < len(sql); i++ {
		switch ch := sql[i]; {
		case ch == '\'' || ch == '"':
			j := i + 1
			for j < len(sql) {
				if sql[j] == ch {
					if j+1 < len(sql) && sql[j+1] == ch { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j
		case ch == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case ch == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				return append(out, "/*")
			}
			i += end + 3
		case ch == '$':
			j := i + 1
			for j < len(sql) && (sql[j] == '_' || sql[j] >= 'a' && sql[j] <= 'z' || sql[j] >= '0' && sql[j] <= '9' || sql[j] >= 'A' && sql[j] <= 'Z') {
				j++
			}
			out = append(out, sql[i+1:j])
			i = j - 1
		case ch == '?':
			out = append(out, "?")
		}
	}
	return out
}

func (p *parser) template(c *Contract, name string, d templateDoc) (*Template, error) {
	key := "templates." + yamlx.KeyName(name)
	if !identRE.MatchString(name) {
		return nil, p.errf(key, "template name must be a lower-case identifier")
	}
	t := &Template{Name: name, SQL: strings.TrimSpace(d.SQL), GroupSize: d.GroupSize}
	if t.SQL == "" {
		return nil, p.errf(key+".sql", "missing")
	}
	if len(d.Tables) == 0 {
		return nil, p.errf(key+".tables", "missing: the tables the query reads")
	}
	for _, tn := range d.Tables {
		if _, ok := c.Tables[tn]; !ok {
			return nil, p.errf(key+".tables", "%q is not one of the contract's tables (%s)", tn, strings.Join(sortedKeys(c.Tables), ", "))
		}
		if slices.Contains(t.Tables, tn) {
			return nil, p.errf(key+".tables", "%q listed twice", tn)
		}
		t.Tables = append(t.Tables, tn)
	}
	if d.Train != nil {
		tr, err := p.train(c, key, d)
		if err != nil {
			return nil, err
		}
		t.Train = tr
	} else if !identRE.MatchString(t.GroupSize) {
		return nil, p.errf(key+".group_size", "missing or not an identifier: the result column that counts each group's rows (checked against min_group_size)")
	}
	for _, pn := range sortedKeys(d.Params) {
		pr, err := p.param(key+".params."+yamlx.KeyName(pn), pn, d.Params[pn])
		if err != nil {
			return nil, err
		}
		t.Params = append(t.Params, pr)
	}
	refs := paramRefs(t.SQL)
	for _, r := range refs {
		switch {
		case r == "?" || r == "":
			return nil, p.errf(key+".sql", "positional parameters (? or $) are not allowed: name each one ($name) and declare it in params")
		case r == "/*":
			return nil, p.errf(key+".sql", "unterminated comment")
		case r[0] >= '0' && r[0] <= '9':
			return nil, p.errf(key+".sql", "positional parameter $%s: name it and declare it in params", r)
		case t.param(r) == nil:
			return nil, p.errf(key+".sql", "$%s is not declared in params", r)
		}
	}
	for _, pr := range t.Params {
		if !slices.Contains(refs, pr.Name) {
			return nil, p.errf(key+".params."+pr.Name, "declared but the SQL never uses $%s", pr.Name)
		}
	}
	if d.Noise != nil {
		nk := key + ".noise"
		if !finite(d.Noise.Epsilon) || d.Noise.Epsilon <= 0 {
			return nil, p.errf(nk+".epsilon", "must be a finite number > 0, got %v", d.Noise.Epsilon)
		}
		if len(d.Noise.Columns) == 0 {
			return nil, p.errf(nk+".columns", "missing: the result columns to noise")
		}
		n := &Noise{Epsilon: d.Noise.Epsilon}
		for _, cn := range sortedKeys(d.Noise.Columns) {
			nc := d.Noise.Columns[cn]
			ck := nk + ".columns." + yamlx.KeyName(cn)
			switch nc.Kind {
			case Count:
				if nc.Bound != 0 {
					return nil, p.errf(ck+".bound", "a count's sensitivity is 1: no bound")
				}
			case Sum:
				if !finite(nc.Bound) || nc.Bound <= 0 {
					return nil, p.errf(ck+".bound", "a sum needs bound > 0 (each row's value clipped to [-bound, bound] by the SQL)")
				}
			default:
				return nil, p.errf(ck+".kind", "want count or sum, got %q", nc.Kind)
			}
			n.Columns = append(n.Columns, NoiseColumn{Name: cn, Kind: nc.Kind, Bound: nc.Bound})
		}
		for _, o := range c.OwnersOf(t) {
			if c.Owners[o].Epsilon < n.Epsilon {
				return nil, p.errf(nk+".epsilon", "one query costs %v, more than owner %s's whole budget %v", n.Epsilon, o, c.Owners[o].Epsilon)
			}
		}
		t.Noise = n
	}
	return t, nil
}

// train checks a training template's train section.
func (p *parser) train(c *Contract, key string, d templateDoc) (*Train, error) {
	tk := key + ".train"
	td := d.Train
	switch {
	case d.GroupSize != "":
		return nil, p.errf(key+".group_size", "a training template releases a model, not groups: min_leaf (≥ min_group_size) takes its place")
	case d.Noise != nil:
		return nil, p.errf(key+".noise", "a training template releases a model: no Laplace noise applies")
	case td.Model != "rf" && td.Model != "gbdt":
		return nil, p.errf(tk+".model", "want rf or gbdt, got %q", td.Model)
	case !identRE.MatchString(td.Label):
		return nil, p.errf(tk+".label", "missing or not an identifier: the result column to predict")
	case td.Task != "classification" && td.Task != "regression":
		return nil, p.errf(tk+".task", "want classification or regression, got %q", td.Task)
	case td.Trees < 1 || td.Trees > 10000:
		return nil, p.errf(tk+".trees", "must be in 1..10000, got %d", td.Trees)
	case td.NumLeaves != 0 && (td.NumLeaves < 2 || td.NumLeaves > 1024 || td.Model != "gbdt"):
		return nil, p.errf(tk+".num_leaves", "gbdt only, in 2..1024 (0: 31), got %d", td.NumLeaves)
	case td.MaxDepth < 0 || td.MaxDepth > 64:
		return nil, p.errf(tk+".max_depth", "must be in 0..64, got %d", td.MaxDepth)
	case td.MinLeaf != 0 && td.MinLeaf < c.MinGroupSize:
		return nil, p.errf(tk+".min_leaf", "%d is below min_group_size %d: a leaf would summarise fewer than k rows", td.MinLeaf, c.MinGroupSize)
	case !finite(td.LR) || td.LR < 0 || td.LR > 1:
		return nil, p.errf(tk+".lr", "must be in [0, 1] (0: 0.1), got %v", td.LR)
	case !finite(td.Lambda) || td.Lambda < 0:
		return nil, p.errf(tk+".lambda", "must be ≥ 0, got %v", td.Lambda)
	}
	tr := &Train{Model: td.Model, Label: td.Label, Task: td.Task, Trees: td.Trees, NumLeaves: td.NumLeaves,
		MaxDepth: td.MaxDepth, MinLeaf: max(td.MinLeaf, c.MinGroupSize), LR: td.LR, Lambda: td.Lambda}
	return tr, nil
}

func (t *Template) param(name string) *Param {
	for i := range t.Params {
		if t.Params[i].Name == name {
			return &t.Params[i]
		}
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
