package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest"
)

// Parse reads a YAML policy. name (a file name, may be empty) prefixes error
// messages, which name the offending key and its line.
//
// Schema (every key but roles is optional; unknown keys are errors):
//
//	roles:
//	  aggregator:                     # role name
//	    sgx:                          # accepted SGX enclaves, any one matches
//	      - mr_enclave: <64 hex>      # at least one of mr_enclave, mr_signer
//	        mr_signer: <64 hex>
//	        isv_prod_id: 0            # exact
//	        min_isv_svn: 1            # minimum; or isv_svn: exact (not both)
//	    tdx:
//	      - mrtd: <96 hex>            # at least one of mrtd, rtmr0..rtmr3
//	        rtmr0: <96 hex>           # rtmr1, rtmr2, rtmr3 alike
//	        mr_config_id: <96 hex>
//	        mr_owner: <96 hex>
//	        td_attributes: <16 hex>   # exact, 8 bytes as in the quote
//	        xfam: <16 hex>
//	    snp:
//	      - measurement: <96 hex>     # required
//	        host_data: <64 hex>
//	    allow_debug: false
//	    tcb_statuses: [UpToDate]      # default; Revoked/Unknown not allowed
//	    advisory_ids: [INTEL-SA-00289]
//	    allow_simulation: false
//
// Hex is plain (no 0x), either case. Anchors, aliases, merge keys, duplicate
// keys and multiple documents are refused.
func Parse(data []byte, name string) (*Policy, error) {
	ps := &parser{name: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ps.errf(nil, "policy is empty")
		}
		return nil, ps.errf(nil, "%s", oneLine(err.Error()))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, ps.errf(&extra, "more than one YAML document")
	}
	if len(doc.Content) == 0 {
		return nil, ps.errf(nil, "policy is empty")
	}
	if err := ps.noAliases(&doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	p := &Policy{Roles: map[string]*Role{}}
	var rolesNode *yaml.Node
	err := ps.mapping(root, "policy", []string{"roles"}, func(key string, k, v *yaml.Node) error {
		rolesNode = v
		return ps.mapping(v, "roles", nil, func(role string, k, v *yaml.Node) error {
			if role == "" {
				return ps.errf(k, "empty role name")
			}
			r, err := ps.role(role, k, v)
			if err != nil {
				return err
			}
			p.Roles[role] = r
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if rolesNode == nil {
		return nil, ps.errf(root, "missing key \"roles\"")
	}
	if len(p.Roles) == 0 {
		return nil, ps.errf(rolesNode, "roles: no roles")
	}
	return p, nil
}

// Load reads a YAML policy file (see Parse).
func Load(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %v", err)
	}
	return Parse(b, path)
}

type parser struct{ name string }

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func (ps *parser) errf(n *yaml.Node, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	where := ps.name
	if n != nil && n.Line > 0 {
		if where != "" {
			where = fmt.Sprintf("%s:%d", where, n.Line)
		} else {
			where = fmt.Sprintf("line %d", n.Line)
		}
	}
	if where == "" {
		return fmt.Errorf("policy: %s", msg)
	}
	return fmt.Errorf("policy: %s: %s", where, msg)
}

func (ps *parser) noAliases(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return ps.errf(n, "YAML anchors and aliases are not supported")
	}
	for _, c := range n.Content {
		if err := ps.noAliases(c); err != nil {
			return err
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// mapping walks a mapping node; known == nil allows any key.
func (ps *parser) mapping(n *yaml.Node, what string, known []string, f func(key string, k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return ps.errf(n, "%s must be a mapping, got %s", what, kindName(n))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return ps.errf(k, "%s: keys must be plain strings", what)
		}
		if k.Tag == "!!merge" {
			return ps.errf(k, "%s: merge keys (<<) are not supported", what)
		}
		key := k.Value
		if line, dup := seen[key]; dup {
			return ps.errf(k, "duplicate key %q in %s (first at line %d)", key, what, line)
		}
		seen[key] = k.Line
		if known != nil && !slices.Contains(known, key) {
			return ps.errf(k, "unknown key %q in %s (known: %s)", key, what, strings.Join(known, ", "))
		}
		if err := f(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

func (ps *parser) sequence(n *yaml.Node, what string, f func(i int, item *yaml.Node) error) error {
	if n.Kind != yaml.SequenceNode {
		return ps.errf(n, "%s must be a list, got %s", what, kindName(n))
	}
	for i, item := range n.Content {
		if err := f(i, item); err != nil {
			return err
		}
	}
	return nil
}

func (ps *parser) boolean(key string, v *yaml.Node) (bool, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		return false, ps.errf(v, "%s must be true or false, got %s", key, kindName(v))
	}
	var b bool
	if err := v.Decode(&b); err != nil {
		return false, ps.errf(v, "%s: %s", key, oneLine(err.Error()))
	}
	return b, nil
}

func (ps *parser) u16(key string, v *yaml.Node) (*uint16, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		return nil, ps.errf(v, "%s must be an integer 0..65535, got %s", key, kindName(v))
	}
	var i int64
	if err := v.Decode(&i); err != nil || i < 0 || i > 0xffff {
		return nil, ps.errf(v, "%s must be an integer 0..65535, got %s", key, kindName(v))
	}
	u := uint16(i)
	return &u, nil
}

func (ps *parser) hexField(key string, v *yaml.Node, size int) ([]byte, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
		return nil, ps.errf(v, "%s must be %d bytes of hex, got %s", key, size, kindName(v))
	}
	b, err := hex.DecodeString(v.Value)
	if err != nil {
		return nil, ps.errf(v, "%s is not hex: %q", key, v.Value)
	}
	if len(b) != size {
		return nil, ps.errf(v, "%s is %d bytes, want %d", key, len(b), size)
	}
	return b, nil
}

func (ps *parser) str(key string, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
		return "", ps.errf(v, "%s must be a string, got %s", key, kindName(v))
	}
	return v.Value, nil
}

var roleKeys = []string{"sgx", "tdx", "snp", "allow_debug", "tcb_statuses", "advisory_ids", "allow_simulation"}

func (ps *parser) role(name string, k, n *yaml.Node) (*Role, error) {
	r := &Role{}
	what := fmt.Sprintf("role %q", name)
	err := ps.mapping(n, what, roleKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "sgx":
			err = ps.sequence(v, "sgx", func(i int, item *yaml.Node) error {
				e, err := ps.sgxEntry(i, item)
				r.SGX = append(r.SGX, e)
				return err
			})
		case "tdx":
			err = ps.sequence(v, "tdx", func(i int, item *yaml.Node) error {
				e, err := ps.tdxEntry(i, item)
				r.TDX = append(r.TDX, e)
				return err
			})
		case "snp":
			err = ps.sequence(v, "snp", func(i int, item *yaml.Node) error {
				e, err := ps.snpEntry(i, item)
				r.SNP = append(r.SNP, e)
				return err
			})
		case "allow_debug":
			r.AllowDebug, err = ps.boolean(key, v)
		case "allow_simulation":
			r.AllowSimulation, err = ps.boolean(key, v)
		case "tcb_statuses":
			r.TCBStatuses = []attest.TCBStatus{}
			err = ps.sequence(v, key, func(i int, item *yaml.Node) error {
				s, err := ps.str(key, item)
				if err != nil {
					return err
				}
				st := attest.TCBStatus(s)
				if err := validateStatus(st); err != nil {
					return ps.errf(item, "%v", err)
				}
				if slices.Contains(r.TCBStatuses, st) {
					return ps.errf(item, "tcb_statuses: %s listed twice", st)
				}
				r.TCBStatuses = append(r.TCBStatuses, st)
				return nil
			})
			if err == nil && len(r.TCBStatuses) == 0 {
				err = ps.errf(v, "%v", validateStatuses(r.TCBStatuses))
			}
		case "advisory_ids":
			r.AdvisoryIDs = []string{}
			err = ps.sequence(v, key, func(i int, item *yaml.Node) error {
				s, err := ps.str(key, item)
				if err != nil {
					return err
				}
				if err := validateAdvisory(s); err != nil {
					return ps.errf(item, "%v", err)
				}
				r.AdvisoryIDs = append(r.AdvisoryIDs, s)
				return nil
			})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, ps.errf(k, "%s: %v", what, err)
	}
	return r, nil
}

var sgxKeys = []string{"mr_enclave", "mr_signer", "isv_prod_id", "isv_svn", "min_isv_svn"}

func (ps *parser) sgxEntry(i int, n *yaml.Node) (SGXEntry, error) {
	var e SGXEntry
	what := fmt.Sprintf("sgx entry %d", i)
	err := ps.mapping(n, what, sgxKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "mr_enclave":
			e.MREnclave, err = ps.hexField(key, v, 32)
		case "mr_signer":
			e.MRSigner, err = ps.hexField(key, v, 32)
		case "isv_prod_id":
			e.ISVProdID, err = ps.u16(key, v)
		case "isv_svn":
			e.ISVSVN, err = ps.u16(key, v)
		case "min_isv_svn":
			e.MinISVSVN, err = ps.u16(key, v)
		}
		return err
	})
	if err == nil {
		if verr := e.validate(); verr != nil {
			err = ps.errf(n, "%s: %v", what, verr)
		}
	}
	return e, err
}

var tdxKeys = []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id", "mr_owner", "td_attributes", "xfam"}

func (ps *parser) tdxEntry(i int, n *yaml.Node) (TDXEntry, error) {
	var e TDXEntry
	what := fmt.Sprintf("tdx entry %d", i)
	err := ps.mapping(n, what, tdxKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "mrtd":
			e.MRTD, err = ps.hexField(key, v, 48)
		case "rtmr0", "rtmr1", "rtmr2", "rtmr3":
			e.RTMR[key[4]-'0'], err = ps.hexField(key, v, 48)
		case "mr_config_id":
			e.MRConfigID, err = ps.hexField(key, v, 48)
		case "mr_owner":
			e.MROwner, err = ps.hexField(key, v, 48)
		case "td_attributes":
			e.TDAttributes, err = ps.hexField(key, v, 8)
		case "xfam":
			e.XFAM, err = ps.hexField(key, v, 8)
		}
		return err
	})
	if err == nil {
		if verr := e.validate(); verr != nil {
			err = ps.errf(n, "%s: %v", what, verr)
		}
	}
	return e, err
}

var snpKeys = []string{"measurement", "host_data"}

func (ps *parser) snpEntry(i int, n *yaml.Node) (SNPEntry, error) {
	var e SNPEntry
	what := fmt.Sprintf("snp entry %d", i)
	err := ps.mapping(n, what, snpKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "measurement":
			e.Measurement, err = ps.hexField(key, v, 48)
		case "host_data":
			e.HostData, err = ps.hexField(key, v, 32)
		}
		return err
	})
	if err == nil {
		if verr := e.validate(); verr != nil {
			err = ps.errf(n, "%s: %v", what, verr)
		}
	}
	return e, err
}
