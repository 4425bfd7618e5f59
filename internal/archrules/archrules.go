// Package archrules states teeml's import rules — which room may import
// which (see docs/architecture.md) — and checks a source tree against
// them. Its test runs the check on this repository in CI, so a forbidden
// import fails the build instead of waiting for a reviewer.
package archrules

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"

	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Module is the module path the rules are written against.
const Module = "github.com/teeml/teeml"

// Rule forbids packages matching From to depend, directly or through other
// packages of the module, on packages matching any of To. Patterns are
// module-relative: "kms" is the package, "kms/..." the package and
// everything below it; a pattern without a dot in its first element that
// is not in the module (e.g. "net") names a standard or external package,
// which is checked as a direct import only.
type Rule struct {
	From   []string
	To     []string
	Except []string // packages (patterns) exempt from the rule as importers
	// Direct limits the rule to direct imports (the CLI reaches everything
	// through the services it calls; it must not import these itself).
	Direct bool
	Why    string
}

// Rules are teeml's import rules.
var Rules = []Rule{
	{From: []string{"kms/..."}, To: []string{"fl/...", "vfl/...", "sql/...", "ml/...", "serve/..."},
		Why: "the key broker links no learning code and no other service (it runs in its own small enclave)"},
	{From: []string{"vfl/..."}, To: []string{"fl/...", "kms/...", "sql/...", "serve/..."},
		Why: "no service imports another service: vertical FL starts its parties through package party"},
	{From: []string{"fl/..."}, To: []string{"vfl/...", "kms/...", "sql/...", "serve/..."}, Except: []string{"fl/encrypted"},
		Why: "no service imports another service (fl/encrypted is the demo that composes FL and the broker)"},
	{From: []string{"sql/..."}, To: []string{"fl/...", "vfl/...", "kms/...", "ml/...", "serve/..."},
		Why: "analytics is a service of its own: it links no learning code and no other service (keys come through sealed.KeySource)"},
	{From: []string{"attest/...", "ratls/...", "pki/...", "sealed/...", "enclave/...", "contract/..."},
		To:  []string{"party/...", "fl/...", "vfl/...", "kms/...", "sql/...", "ml/...", "serve/...", "cmd/..."},
		Why: "evidence, channels, identity and data formats sit below every service"},
	{From: []string{"serve/..."}, To: []string{"fl/...", "vfl/...", "kms/...", "sql/..."}, Except: []string{"serve/quickstart"},
		Why: "no service imports another: inference serving gets keys through party (serve/quickstart is the demo that composes it with the broker)"},
	{From: []string{"cleanroom/..."}, To: []string{"fl/...", "vfl/...", "ml/..."},
		Why: "the clean room composes the key broker and the analytics party; it links no learning code"},
	{From: []string{"party/..."}, To: []string{"fl/...", "vfl/...", "kms/...", "sql/...", "ml/...", "cmd/..."},
		Why: "every service starts its parties through party; party knows no service"},
	{From: []string{"ml/trees/...", "ml/kmeans/..."},
		To:  []string{"fl/...", "vfl/...", "kms/...", "sql/...", "party/...", "attest/...", "ratls/...", "pki/...", "cmd/..."},
		Why: "classical ML algorithms know nothing of federation, transport or the CLI"},
	{From: []string{"cleanroomml/..."},
		To:  []string{"kms/...", "fl/...", "vfl/...", "serve/...", "party/...", "cleanroom/...", "cmd/..."},
		Why: "cleanroomml joins the analytics party's rows to ml/trees and nothing else: no key broker, no other service, no party"},
	{From: []string{"fl/treefed"},
		To:  []string{"fl/protocol", "fl/scheduler", "fl/run", "fl/workspace", "party/...", "attest/...", "ratls/...", "pki/...", "sealed/...", "cmd/..."},
		Why: "federated trees are an algorithm (train, merge, evaluate on weights): fl/run wires them to the protocol, the party and the files"},
	{From: []string{"fl/treefed"}, To: []string{"net", "google.golang.org/grpc"}, Direct: true,
		Why: "federated trees open no connection: the model's bytes travel through fl/protocol's ordinary transfer"},
	{From: []string{"image/...", "deploy/..."},
		To:  []string{"party/...", "fl/...", "vfl/...", "kms/...", "sql/...", "ml/...", "serve/...", "cleanroom/...", "cmd/...", "attest/...", "ratls/...", "pki/..."},
		Why: "packaging (images, the Helm chart) knows files, layers, manifests and values; it runs no party and links no service"},
	{From: []string{"dashboard"},
		To:  []string{"party/...", "fl/...", "vfl/...", "kms/...", "sql/...", "serve/...", "ml/...", "cleanroom/...", "cmd/...", "ratls/...", "google.golang.org/grpc"},
		Why: "the dashboard renders the read-only data sources it defines; it links no service, no party and no channel"},
	{From: []string{"dashboard/pkisource"},
		To:  []string{"party/...", "fl/...", "vfl/...", "kms/...", "sql/...", "serve/...", "ml/...", "cleanroom/...", "cmd/...", "google.golang.org/grpc"},
		Why: "the federation source reads a federation's files through pki alone, so any service can mount the dashboard"},
	{From: []string{"dashboard/flsource"},
		To:  []string{"kms/...", "vfl/...", "sql/...", "serve/...", "cleanroom/...", "cmd/...", "party/...", "fl/run/...", "fl/encrypted/...", "fl/workspace/..."},
		Why: "the FL source reads a workspace's files through the metrics format (fl/metrics) and pki, no FL runtime, so an aggregator can mount it"},
	{From: []string{"dashboard/vflsource"},
		To:  []string{"fl/...", "kms/...", "sql/...", "serve/...", "party/...", "cleanroom/...", "cmd/...", "vfl/run/...", "vfl/bridge/...", "vfl/split/..."},
		Why: "the VFL source reads state directories through the PSI session format (vfl/psi), never the VFL runtime"},
	{From: []string{"dashboard/kmssource"},
		To:  []string{"fl/...", "vfl/...", "sql/...", "serve/...", "ml/...", "cleanroom/...", "cmd/..."},
		Why: "door: the key-broker source calls kms.VerifyStoreAnchored, the broker's own read-only audit verification (as `teeml kms audit verify --local`), rather than re-implementing it; it links no other service and no learning code"},
	{From: []string{"dashboard/wsdash"},
		To:  []string{"sql/...", "serve/...", "cleanroom/...", "cmd/...", "fl/run/...", "fl/encrypted/...", "vfl/run/..."},
		Why: "`teeml dashboard` composes the FL and key-broker sources over a workspace's files and starts its own party (role dashboard) through party; it runs no service"},
	{From: []string{"cmd/teeml"}, To: []string{"party/...", "ratls/...", "net", "google.golang.org/grpc"}, Direct: true,
		Why: "the CLI parses flags and calls a service; it opens no channel and starts no party itself"},
}

// Violation is one forbidden dependency.
type Violation struct {
	Rule  *Rule
	Chain []string // importer first, forbidden package last
}

func (v Violation) String() string {
	return fmt.Sprintf("%s (%s)", strings.Join(v.Chain, " → "), v.Rule.Why)
}

// Graph maps each package of the module (module-relative path) to its
// direct imports (full import paths) in non-test files.
type Graph map[string][]string

// Load reads the imports of every non-test Go file below root, the
// directory of module Module. Directories named testdata, and those
// starting with "." or "_", are skipped, as the go tool does.
func Load(root string) (Graph, error) {
	g := Graph{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return fmt.Errorf("archrules: %w", err)
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		if _, ok := g[pkg]; !ok {
			g[pkg] = nil
		}
		for _, im := range f.Imports {
			ip := strings.Trim(im.Path.Value, `"`)
			if !slices.Contains(g[pkg], ip) {
				g[pkg] = append(g[pkg], ip)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(g) == 0 {
		return nil, fmt.Errorf("archrules: no Go packages under %s", root)
	}
	return g, nil
}

// LoadModule is Load of the module root that contains dir.
func LoadModule(dir string) (Graph, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("archrules: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return Load(d)
		}
		if filepath.Dir(d) == d {
			return nil, fmt.Errorf("archrules: no go.mod above %s", dir)
		}
	}
}

func match(pattern, pkg string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pkg == pattern
}

func matchAny(patterns []string, pkg string) bool {
	for _, p := range patterns {
		if match(p, pkg) {
			return true
		}
	}
	return false
}

// local returns the module-relative path of import path ip, if it is in
// the module.
func local(ip string) (string, bool) {
	if ip == Module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(ip, Module+"/")
	return rel, ok
}

// Check returns every violation of rules in g, sorted.
func Check(g Graph, rules []Rule) []Violation {
	var out []Violation
	pkgs := make([]string, 0, len(g))
	for p := range g {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for i := range rules {
		r := &rules[i]
		for _, pkg := range pkgs {
			if !matchAny(r.From, pkg) || matchAny(r.Except, pkg) {
				continue
			}
			if chain := forbidden(g, r, pkg); chain != nil {
				out = append(out, Violation{Rule: r, Chain: chain})
			}
		}
	}
	return out
}

// forbidden returns the shortest import chain from pkg to a package the
// rule forbids, or nil.
func forbidden(g Graph, r *Rule, pkg string) []string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, ip := range g[cur] {
			rel, ok := local(ip)
			if !ok {
				// Outside the module: direct imports only.
				if cur == pkg && matchAny(r.To, ip) {
					return []string{pkg, ip}
				}
				continue
			}
			if _, seen := prev[rel]; seen {
				continue
			}
			prev[rel] = cur
			if matchAny(r.To, rel) && (!r.Direct || cur == pkg) {
				chain := []string{rel}
				for p := cur; p != ""; p = prev[p] {
					chain = append(chain, p)
				}
				slices.Reverse(chain)
				return chain
			}
			if !r.Direct {
				queue = append(queue, rel)
			}
		}
	}
	return nil
}
