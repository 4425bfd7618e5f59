package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// ParseCCZoo converts CCZoo's RA-TLS measurement file (dynamic_config.json of
// cczoo/grpc-ra-tls) into a Role:
//
//	{
//	  "verify_mr_enclave": "on",
//	  "verify_mr_signer": "on",
//	  "verify_isv_prod_id": "on",
//	  "verify_isv_svn": "on",
//	  "sgx_mrs": [
//	    {"mr_enclave": "<64 hex>", "mr_signer": "<64 hex>", "isv_prod_id": "0", "isv_svn": "0"}
//	  ]
//	}
//
// Semantics follow CCZoo's verifier: an enclave is accepted when it matches
// any sgx_mrs entry on every field whose verify_* switch is "on"; fields
// switched "off" are not checked. isv_svn is compared for equality in CCZoo
// (not as a minimum), so it becomes SGXEntry.ISVSVN (exact); write a YAML
// policy with min_isv_svn for a minimum.
//
// It is stricter than CCZoo where CCZoo would silently misread a file:
//
//   - verify_* must be exactly "on" or "off" and present (CCZoo compares
//     prefixes and crashes on a missing key); "verify_in_enclave" is accepted
//     and ignored, as it only picks CCZoo's verification library. Any other
//     key is an error (for example the Occlum variant's
//     verify_enclave_debuggable, which this converter does not support).
//   - mr_enclave/mr_signer of a switched-on field must be exactly 64 hex
//     digits (CCZoo takes the first 64 and zero-fills short values).
//   - isv_prod_id/isv_svn may be a JSON number or a decimal string, and are
//     read as written: CCZoo's own parser reads a quoted value such as "2"
//     as 0, so a file relying on that reads differently here.
//   - duplicate keys are errors (cJSON uses the first, Go the last).
//   - switching off both mr_enclave and mr_signer is an error: it would
//     accept any enclave.
//
// The role gets the default checks (no debug, UpToDate only, no advisory,
// no simulation), which match Gramine RA-TLS's defaults without its
// RA_TLS_ALLOW_* insecure overrides.
func ParseCCZoo(data []byte) (*Role, error) {
	cfg, err := decodeCCZoo(data)
	if err != nil {
		return nil, err
	}
	on, err := cfg.switches()
	if err != nil {
		return nil, err
	}
	if len(cfg.SGXMRs) == 0 {
		return nil, errors.New("policy: cczoo config: sgx_mrs is empty or missing")
	}
	r := &Role{}
	for i, m := range cfg.SGXMRs {
		e, err := m.entry(i, on)
		if err != nil {
			return nil, err
		}
		r.SGX = append(r.SGX, e)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("policy: cczoo config: %w", err)
	}
	return r, nil
}

// ccZooConfig is dynamic_config.json.
type ccZooConfig struct {
	VerifyInEnclave *string      `json:"verify_in_enclave"`
	VerifyMREnclave *string      `json:"verify_mr_enclave"`
	VerifyMRSigner  *string      `json:"verify_mr_signer"`
	VerifyISVProdID *string      `json:"verify_isv_prod_id"`
	VerifyISVSVN    *string      `json:"verify_isv_svn"`
	SGXMRs          []ccZooEntry `json:"sgx_mrs"`
}

// ccZooEntry is one sgx_mrs entry.
type ccZooEntry struct {
	MREnclave *string         `json:"mr_enclave"`
	MRSigner  *string         `json:"mr_signer"`
	ISVProdID json.RawMessage `json:"isv_prod_id"`
	ISVSVN    json.RawMessage `json:"isv_svn"`
}

// ccZooSwitches are the verify_* switches that are "on".
type ccZooSwitches struct{ enclave, signer, prodID, svn bool }

// decodeCCZoo decodes one JSON object, duplicate and unknown keys refused.
func decodeCCZoo(data []byte) (*ccZooConfig, error) {
	if err := noDuplicateKeys(data); err != nil {
		return nil, fmt.Errorf("policy: cczoo config: %w", err)
	}
	var cfg ccZooConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("policy: cczoo config: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("policy: cczoo config: data after the JSON object")
	}
	return &cfg, nil
}

// onOff reads a verify_* switch: exactly "on" or "off", present when
// required.
func onOff(key string, v *string, required bool) (bool, error) {
	if v == nil {
		if !required {
			return false, nil
		}
		return false, fmt.Errorf("policy: cczoo config: %s missing (want \"on\" or \"off\")", key)
	}
	switch *v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("policy: cczoo config: %s is %q, want \"on\" or \"off\"", key, *v)
}

func (cfg *ccZooConfig) switches() (ccZooSwitches, error) {
	var on ccZooSwitches
	if _, err := onOff("verify_in_enclave", cfg.VerifyInEnclave, false); err != nil {
		return on, err
	}
	for _, sw := range []struct {
		key string
		v   *string
		dst *bool
	}{
		{"verify_mr_enclave", cfg.VerifyMREnclave, &on.enclave},
		{"verify_mr_signer", cfg.VerifyMRSigner, &on.signer},
		{"verify_isv_prod_id", cfg.VerifyISVProdID, &on.prodID},
		{"verify_isv_svn", cfg.VerifyISVSVN, &on.svn},
	} {
		var err error
		if *sw.dst, err = onOff(sw.key, sw.v, true); err != nil {
			return on, err
		}
	}
	if !on.enclave && !on.signer {
		return on, errors.New("policy: cczoo config: verify_mr_enclave and verify_mr_signer are both off: any enclave would be accepted")
	}
	return on, nil
}

// entry converts sgx_mrs[i], checking the fields switched on.
func (m *ccZooEntry) entry(i int, on ccZooSwitches) (SGXEntry, error) {
	var e SGXEntry
	var err error
	if e.MREnclave, err = ccZooMR(i, "mr_enclave", on.enclave, m.MREnclave); err != nil {
		return e, err
	}
	if e.MRSigner, err = ccZooMR(i, "mr_signer", on.signer, m.MRSigner); err != nil {
		return e, err
	}
	if e.ISVProdID, err = ccZooNum(i, "isv_prod_id", on.prodID, m.ISVProdID); err != nil {
		return e, err
	}
	if e.ISVSVN, err = ccZooNum(i, "isv_svn", on.svn, m.ISVSVN); err != nil {
		return e, err
	}
	return e, nil
}

// ccZooMR reads a measurement of sgx_mrs[i]: 64 hex digits when on.
func ccZooMR(i int, key string, on bool, v *string) ([]byte, error) {
	if !on {
		return nil, nil
	}
	if v == nil {
		return nil, fmt.Errorf("policy: cczoo config: sgx_mrs[%d].%s missing while verify_%s is on", i, key, key)
	}
	b, err := hex.DecodeString(*v)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("policy: cczoo config: sgx_mrs[%d].%s %q is not 64 hex digits", i, key, *v)
	}
	return b, nil
}

// ccZooNum reads a number of sgx_mrs[i] (JSON number or decimal string,
// 0..65535) when on.
func ccZooNum(i int, key string, on bool, raw json.RawMessage) (*uint16, error) {
	if !on {
		return nil, nil
	}
	if raw == nil {
		return nil, fmt.Errorf("policy: cczoo config: sgx_mrs[%d].%s missing while verify_%s is on", i, key, key)
	}
	s := string(raw)
	var str string
	if json.Unmarshal(raw, &str) == nil {
		s = str
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("policy: cczoo config: sgx_mrs[%d].%s %s is not a decimal 0..65535", i, key, raw)
	}
	u := uint16(n)
	return &u, nil
}

// LoadCCZoo reads a CCZoo dynamic_config.json file (see ParseCCZoo) and
// returns a policy with the single role named role.
func LoadCCZoo(path, role string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	r, err := ParseCCZoo(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return &Policy{Roles: map[string]*Role{role: r}}, nil
}

// noDuplicateKeys walks a JSON document and refuses any object with a key
// given twice.
func noDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(depth int) error
	walk = func(depth int) error {
		if depth > 64 {
			return errors.New("JSON nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		switch d {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if seen[k] {
					return fmt.Errorf("duplicate key %q", k)
				}
				seen[k] = true
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
		case '[':
			for dec.More() {
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // closing delimiter
		return err
	}
	return walk(0)
}
