package policy

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/internal/yamlx"
)

// Parse reads a YAML policy. Errors are *yamlx.Error, one line naming the
// file (name, or "policy" when empty), line and dotted key, e.g.
//
//	policies/vfl.yaml:5: roles.leader.sgx[0].mr_enclave: 31 bytes, want 32
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
//	        mr_service_td: <96 hex>  # TDX 1.5 only (a TDX 1.0 report is refused)
//	        td_attributes: <16 hex>   # exact, 8 bytes as in the quote
//	        xfam: <16 hex>
//	    snp:
//	      - measurement: <96 hex>     # required
//	        host_data: <64 hex>
//	    allow_debug: false
//	    tcb_statuses: [UpToDate]      # default; Revoked/Unknown not allowed
//	    advisory_ids: [INTEL-SA-00289]
//	    allow_simulation: false
//	    snp_allow_committed_tcb_below_current: false # SNP update not committed
//
// Hex is plain (no 0x), either case. Anchors, aliases, merge keys, duplicate
// keys and multiple documents are refused.
func Parse(data []byte, name string) (*Policy, error) {
	file := name
	if file == "" {
		file = "policy"
	}
	root, err := yamlx.Document(data, file, "policy", MaxSize)
	if err != nil {
		return nil, err
	}
	ps := &parser{w: &yamlx.Walker{File: file, Root: "policy"}}
	p := &Policy{Roles: map[string]*Role{}}
	err = ps.w.Mapping(root, "", []yamlx.Field{{Key: "roles", Required: true, Parse: func(key string, v *yaml.Node) error {
		err := ps.w.Keys(v, key, func(rkey string, k, v *yaml.Node) error {
			if k.Value == "" {
				return ps.w.Errorf(k, rkey, "empty role name")
			}
			r, err := ps.role(rkey, k, v)
			if err != nil {
				return err
			}
			p.Roles[k.Value] = r
			return nil
		})
		if err == nil && len(p.Roles) == 0 {
			err = ps.w.Errorf(v, key, "no roles")
		}
		return err
	}}})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// MaxSize caps a policy (file or bytes): 4 MiB, some 50 000 entries. A
// larger one is refused before it is parsed.
const MaxSize = 4 << 20

// Load reads a YAML policy file (see Parse) of at most MaxSize bytes.
func Load(path string) (*Policy, error) {
	b, err := yamlx.ReadFile(path, "policy", MaxSize)
	if err != nil {
		return nil, err
	}
	return Parse(b, path)
}

type parser struct{ w *yamlx.Walker }

// got describes a value for errors: a scalar's value quoted, null
// "nothing", else its kind.
func got(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return "nothing"
	case n.Kind == yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return yamlx.KindName(n)
}

// fields is a mapping's known keys, all optional, each parsed by parse.
func fields(keys []string, parse func(key string, v *yaml.Node) error) []yamlx.Field {
	fs := make([]yamlx.Field, len(keys))
	for i, k := range keys {
		fs[i] = yamlx.Field{Key: k, Parse: parse}
	}
	return fs
}

// last is the last element of a dotted key.
func last(key string) string { return key[strings.LastIndexByte(key, '.')+1:] }

func (ps *parser) boolean(key string, v *yaml.Node) (bool, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		return false, ps.w.Errorf(v, key, "must be true or false, got %s", got(v))
	}
	var b bool
	if err := v.Decode(&b); err != nil {
		return false, ps.w.Errorf(v, key, "%w", err)
	}
	return b, nil
}

func (ps *parser) u16(key string, v *yaml.Node) (*uint16, error) {
	var i int64
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&i) != nil || i < 0 || i > 0xffff {
		return nil, ps.w.Errorf(v, key, "must be an integer 0..65535, got %s", got(v))
	}
	u := uint16(i)
	return &u, nil
}

func (ps *parser) hexField(key string, v *yaml.Node, size int) ([]byte, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
		return nil, ps.w.Errorf(v, key, "must be %d bytes of hex, got %s", size, got(v))
	}
	b, err := hex.DecodeString(v.Value)
	if err != nil {
		return nil, ps.w.Errorf(v, key, "not hex: %q", v.Value)
	}
	if len(b) != size {
		return nil, ps.w.Errorf(v, key, "%d bytes, want %d", len(b), size)
	}
	return b, nil
}

func (ps *parser) str(key string, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
		return "", ps.w.Errorf(v, key, "must be a string, got %s", got(v))
	}
	return v.Value, nil
}

var roleKeys = []string{"sgx", "tdx", "snp", "allow_debug", "tcb_statuses", "advisory_ids", "allow_simulation", "snp_allow_committed_tcb_below_current"}

// role parses roles.<name> (key).
func (ps *parser) role(key string, k, n *yaml.Node) (*Role, error) {
	r := &Role{}
	err := ps.w.Mapping(n, key, fields(roleKeys, func(key string, v *yaml.Node) error {
		var err error
		switch last(key) {
		case "sgx":
			err = ps.w.Sequence(v, key, 0, func(key string, item *yaml.Node) error {
				e, err := ps.sgxEntry(key, item)
				r.SGX = append(r.SGX, e)
				return err
			})
		case "tdx":
			err = ps.w.Sequence(v, key, 0, func(key string, item *yaml.Node) error {
				e, err := ps.tdxEntry(key, item)
				r.TDX = append(r.TDX, e)
				return err
			})
		case "snp":
			err = ps.w.Sequence(v, key, 0, func(key string, item *yaml.Node) error {
				e, err := ps.snpEntry(key, item)
				r.SNP = append(r.SNP, e)
				return err
			})
		case "allow_debug":
			r.AllowDebug, err = ps.boolean(key, v)
		case "allow_simulation":
			r.AllowSimulation, err = ps.boolean(key, v)
		case "snp_allow_committed_tcb_below_current":
			r.SNPAllowCommittedTCBBelowCurrent, err = ps.boolean(key, v)
		case "tcb_statuses":
			r.TCBStatuses, err = ps.statuses(key, v)
		case "advisory_ids":
			r.AdvisoryIDs, err = ps.advisories(key, v)
		}
		return err
	}))
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, ps.w.Errorf(k, key, "%w", err)
	}
	return r, nil
}

// statuses parses tcb_statuses: known statuses, each once, at least one.
func (ps *parser) statuses(key string, v *yaml.Node) ([]attest.TCBStatus, error) {
	list := []attest.TCBStatus{}
	err := ps.w.Sequence(v, key, 0, func(ikey string, item *yaml.Node) error {
		s, err := ps.str(ikey, item)
		if err != nil {
			return err
		}
		st := attest.TCBStatus(s)
		if err := validateStatus(st); err != nil {
			return ps.w.Errorf(item, ikey, "%s", strings.TrimPrefix(err.Error(), "tcb_statuses: "))
		}
		if slices.Contains(list, st) {
			return ps.w.Errorf(item, ikey, "%s listed twice", st)
		}
		list = append(list, st)
		return nil
	})
	if err == nil && len(list) == 0 {
		err = ps.w.Errorf(v, key, "%s", strings.TrimPrefix(validateStatuses(list).Error(), "tcb_statuses is "))
	}
	return list, err
}

// advisories parses advisory_ids.
func (ps *parser) advisories(key string, v *yaml.Node) ([]string, error) {
	list := []string{}
	err := ps.w.Sequence(v, key, 0, func(ikey string, item *yaml.Node) error {
		s, err := ps.str(ikey, item)
		if err != nil {
			return err
		}
		if err := validateAdvisory(s); err != nil {
			return ps.w.Errorf(item, ikey, "%s", strings.TrimPrefix(err.Error(), "advisory_ids: "))
		}
		list = append(list, s)
		return nil
	})
	return list, err
}

var sgxKeys = []string{"mr_enclave", "mr_signer", "isv_prod_id", "isv_svn", "min_isv_svn"}

func (ps *parser) sgxEntry(key string, n *yaml.Node) (SGXEntry, error) {
	var e SGXEntry
	err := ps.w.Mapping(n, key, fields(sgxKeys, func(key string, v *yaml.Node) error {
		var err error
		switch last(key) {
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
	}))
	if err == nil {
		if verr := e.validate(); verr != nil {
			err = ps.w.Errorf(n, key, "%w", verr)
		}
	}
	return e, err
}

var tdxKeys = []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id", "mr_owner", "td_attributes", "xfam", "mr_service_td"}

func (ps *parser) tdxEntry(key string, n *yaml.Node) (TDXEntry, error) {
	var e TDXEntry
	err := ps.w.Mapping(n, key, fields(tdxKeys, func(key string, v *yaml.Node) error {
		var err error
		switch k := last(key); k {
		case "mrtd":
			e.MRTD, err = ps.hexField(key, v, 48)
		case "rtmr0", "rtmr1", "rtmr2", "rtmr3":
			e.RTMR[k[4]-'0'], err = ps.hexField(key, v, 48)
		case "mr_config_id":
			e.MRConfigID, err = ps.hexField(key, v, 48)
		case "mr_owner":
			e.MROwner, err = ps.hexField(key, v, 48)
		case "td_attributes":
			e.TDAttributes, err = ps.hexField(key, v, 8)
		case "xfam":
			e.XFAM, err = ps.hexField(key, v, 8)
		case "mr_service_td":
			e.MRServiceTD, err = ps.hexField(key, v, 48)
		}
		return err
	}))
	if err == nil {
		if verr := e.validate(); verr != nil {
			err = ps.w.Errorf(n, key, "%w", verr)
		}
	}
	return e, err
}

var snpKeys = []string{"measurement", "host_data"}

func (ps *parser) snpEntry(key string, n *yaml.Node) (SNPEntry, error) {
	var e SNPEntry
	err := ps.w.Mapping(n, key, fields(snpKeys, func(key string, v *yaml.Node) error {
		var err error
		switch last(key) {
		case "measurement":
			e.Measurement, err = ps.hexField(key, v, 48)
		case "host_data":
			e.HostData, err = ps.hexField(key, v, 32)
		}
		return err
	}))
	if err == nil {
		if verr := e.validate(); verr != nil {
			err = ps.w.Errorf(n, key, "%w", verr)
		}
	}
	return e, err
}
