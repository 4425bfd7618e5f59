package collateral

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// TCB Info ids.
const (
	TCBInfoIDSGX = "SGX"
	TCBInfoIDTDX = "TDX"
)

// TCB status strings used in TCB Info, QE Identity and TDX module identity
// TCB levels.
const (
	StatusUpToDate                          = "UpToDate"
	StatusSWHardeningNeeded                 = "SWHardeningNeeded"
	StatusConfigurationNeeded               = "ConfigurationNeeded"
	StatusConfigurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
	StatusOutOfDate                         = "OutOfDate"
	StatusOutOfDateConfigurationNeeded      = "OutOfDateConfigurationNeeded"
	StatusRevoked                           = "Revoked"
)

// TCBInfo is a parsed TCB Info body (version 3).
type TCBInfo struct {
	ID                      string // "SGX" or "TDX"
	Version                 int
	IssueDate               time.Time
	NextUpdate              time.Time
	FMSPC                   [6]byte
	PCEID                   [2]byte
	TCBType                 int
	TCBEvaluationDataNumber int
	// TDXModule and TDXModuleIdentities are set for TDX TCB Info only.
	TDXModule           *TDXModule
	TDXModuleIdentities []TDXModuleIdentity
	// TCBLevels in the order of the document.
	TCBLevels []TCBLevel
}

// TCBLevel is one platform TCB level.
type TCBLevel struct {
	SGXComponents [16]TCBComponent
	PCESVN        uint16
	// TDXComponents is set (HasTDXComponents) for TDX TCB Info.
	TDXComponents    [16]TCBComponent
	HasTDXComponents bool
	TCBDate          time.Time
	TCBStatus        string
	AdvisoryIDs      []string
}

// TCBComponent is one TCB component SVN with its optional description.
type TCBComponent struct {
	SVN      uint8
	Category string
	Type     string
}

// TDXModule describes the expected TDX module signer and attributes.
type TDXModule struct {
	MRSigner       [48]byte
	Attributes     [8]byte
	AttributesMask [8]byte
}

// TDXModuleIdentity is a TDX module identity (id "TDX_<major version hex>")
// with its own TCB levels.
type TDXModuleIdentity struct {
	ID string
	TDXModule
	TCBLevels []TDXModuleTCBLevel
}

// TDXModuleTCBLevel is a TCB level of a TDX module identity.
type TDXModuleTCBLevel struct {
	ISVSVN      uint8
	TCBDate     time.Time
	TCBStatus   string
	AdvisoryIDs []string
}

type wireComponent struct {
	SVN      *uint8 `json:"svn"`
	Category string `json:"category"`
	Type     string `json:"type"`
}

type wireTCBInfo struct {
	ID                      *string                 `json:"id"`
	Version                 *int                    `json:"version"`
	IssueDate               *string                 `json:"issueDate"`
	NextUpdate              *string                 `json:"nextUpdate"`
	FMSPC                   *string                 `json:"fmspc"`
	PCEID                   *string                 `json:"pceId"`
	TCBType                 *int                    `json:"tcbType"`
	TCBEvaluationDataNumber *int                    `json:"tcbEvaluationDataNumber"`
	TDXModule               *wireTDXModule          `json:"tdxModule"`
	TDXModuleIdentities     []wireTDXModuleIdentity `json:"tdxModuleIdentities"`
	TCBLevels               []wireTCBLevel          `json:"tcbLevels"`
}

type wireTDXModule struct {
	MRSigner       *string `json:"mrsigner"`
	Attributes     *string `json:"attributes"`
	AttributesMask *string `json:"attributesMask"`
}

type wireTDXModuleIdentity struct {
	ID             *string `json:"id"`
	MRSigner       *string `json:"mrsigner"`
	Attributes     *string `json:"attributes"`
	AttributesMask *string `json:"attributesMask"`
	TCBLevels      []struct {
		TCB *struct {
			ISVSVN *uint8 `json:"isvsvn"`
		} `json:"tcb"`
		TCBDate     *string  `json:"tcbDate"`
		TCBStatus   *string  `json:"tcbStatus"`
		AdvisoryIDs []string `json:"advisoryIDs"`
	} `json:"tcbLevels"`
}

type wireTCBLevel struct {
	TCB *struct {
		SGXComponents []wireComponent `json:"sgxtcbcomponents"`
		PCESVN        *uint16         `json:"pcesvn"`
		TDXComponents []wireComponent `json:"tdxtcbcomponents"`
	} `json:"tcb"`
	TCBDate     *string  `json:"tcbDate"`
	TCBStatus   *string  `json:"tcbStatus"`
	AdvisoryIDs []string `json:"advisoryIDs"`
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	return nil
}

func req[T any](p *T, name string) (T, error) {
	var zero T
	if p == nil {
		return zero, fmt.Errorf("field %s missing", name)
	}
	return *p, nil
}

func parseTime(p *string, name string) (time.Time, error) {
	s, err := req(p, name)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %s: %w", name, err)
	}
	return t, nil
}

// hexFixed decodes a hex field of exactly len(dst) bytes (either case: the
// body is signed, so its spelling is not malleable).
func hexFixed(p *string, name string, dst []byte) error {
	s, err := req(p, name)
	if err != nil {
		return err
	}
	if len(s) != 2*len(dst) {
		return fmt.Errorf("field %s: %d hex digits, want %d", name, len(s), 2*len(dst))
	}
	for i := range dst {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return fmt.Errorf("field %s: invalid hex", name)
		}
		dst[i] = hi<<4 | lo
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func components(w []wireComponent, name string) ([16]TCBComponent, error) {
	var out [16]TCBComponent
	if len(w) != 16 {
		return out, fmt.Errorf("field %s: %d components, want 16", name, len(w))
	}
	for i, c := range w {
		if c.SVN == nil {
			return out, fmt.Errorf("field %s[%d].svn missing", name, i)
		}
		out[i] = TCBComponent{SVN: *c.SVN, Category: c.Category, Type: c.Type}
	}
	return out, nil
}

// ErrTCBInfoV2 is returned (wrapped) for a TCB Info body of version 2, as
// Intel PCS API v3 and PCCS caches still serving it return: it has no id
// field and a different TCB component layout, and teeml verifies version 3
// only.
var ErrTCBInfoV2 = errors.New("TCB Info version 2 (PCS API v3) is not supported: fetch v3 from PCS API v4")

// ParseTCBInfo parses a TCB Info body (the exact signed JSON). Version 3 is
// supported, for both SGX and TDX; version 2 is refused with ErrTCBInfoV2.
func ParseTCBInfo(b []byte) (*TCBInfo, error) {
	t, err := parseTCBInfo(b)
	if err != nil {
		return nil, fmt.Errorf("collateral: tcb info: %w", err)
	}
	return t, nil
}

func parseTCBInfo(b []byte) (*TCBInfo, error) {
	// Name the version before the strict decode complains about version 2's
	// layout (no id, sgxtcbcompNNsvn fields).
	var peek struct {
		Version json.RawMessage `json:"version"`
	}
	if json.Unmarshal(b, &peek) == nil && string(bytes.TrimSpace(peek.Version)) == "2" {
		return nil, ErrTCBInfoV2
	}
	var w wireTCBInfo
	if err := decodeStrict(b, &w); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	t := &TCBInfo{}
	var err error
	if t.ID, err = req(w.ID, "id"); err != nil {
		return nil, err
	}
	if t.ID != TCBInfoIDSGX && t.ID != TCBInfoIDTDX {
		return nil, fmt.Errorf("field id: unknown id %q", t.ID)
	}
	if t.Version, err = req(w.Version, "version"); err != nil {
		return nil, err
	}
	if t.Version != 3 {
		return nil, fmt.Errorf("field version: unsupported version %d (want 3)", t.Version)
	}
	if t.IssueDate, err = parseTime(w.IssueDate, "issueDate"); err != nil {
		return nil, err
	}
	if t.NextUpdate, err = parseTime(w.NextUpdate, "nextUpdate"); err != nil {
		return nil, err
	}
	if !t.NextUpdate.After(t.IssueDate) {
		return nil, errors.New("field nextUpdate: not after issueDate")
	}
	if err = hexFixed(w.FMSPC, "fmspc", t.FMSPC[:]); err != nil {
		return nil, err
	}
	if err = hexFixed(w.PCEID, "pceId", t.PCEID[:]); err != nil {
		return nil, err
	}
	if t.TCBType, err = req(w.TCBType, "tcbType"); err != nil {
		return nil, err
	}
	if t.TCBType != 0 {
		return nil, fmt.Errorf("field tcbType: unsupported type %d", t.TCBType)
	}
	if t.TCBEvaluationDataNumber, err = req(w.TCBEvaluationDataNumber, "tcbEvaluationDataNumber"); err != nil {
		return nil, err
	}
	isTDX := t.ID == TCBInfoIDTDX
	if isTDX {
		if w.TDXModule == nil {
			return nil, errors.New("field tdxModule missing in TDX TCB Info")
		}
		if t.TDXModule, err = parseTDXModule(w.TDXModule); err != nil {
			return nil, err
		}
		for i, wi := range w.TDXModuleIdentities {
			id, err := parseTDXModuleIdentity(wi, fmt.Sprintf("tdxModuleIdentities[%d]", i))
			if err != nil {
				return nil, err
			}
			t.TDXModuleIdentities = append(t.TDXModuleIdentities, id)
		}
	} else if w.TDXModule != nil || len(w.TDXModuleIdentities) != 0 {
		return nil, errors.New("TDX module fields in SGX TCB Info")
	}
	if len(w.TCBLevels) == 0 {
		return nil, errors.New("field tcbLevels missing or empty")
	}
	for i, wl := range w.TCBLevels {
		l, err := parseTCBLevel(wl, fmt.Sprintf("tcbLevels[%d]", i), isTDX)
		if err != nil {
			return nil, err
		}
		t.TCBLevels = append(t.TCBLevels, l)
	}
	return t, nil
}

func parseTDXModule(w *wireTDXModule) (*TDXModule, error) {
	m := &TDXModule{}
	if err := hexFixed(w.MRSigner, "tdxModule.mrsigner", m.MRSigner[:]); err != nil {
		return nil, err
	}
	if err := hexFixed(w.Attributes, "tdxModule.attributes", m.Attributes[:]); err != nil {
		return nil, err
	}
	if err := hexFixed(w.AttributesMask, "tdxModule.attributesMask", m.AttributesMask[:]); err != nil {
		return nil, err
	}
	return m, nil
}

// parseTDXModuleIdentity parses one of tdxModuleIdentities; name is its
// field path in errors.
func parseTDXModuleIdentity(wi wireTDXModuleIdentity, name string) (TDXModuleIdentity, error) {
	var id TDXModuleIdentity
	var err error
	if id.ID, err = req(wi.ID, name+".id"); err != nil {
		return id, err
	}
	if err = hexFixed(wi.MRSigner, name+".mrsigner", id.MRSigner[:]); err != nil {
		return id, err
	}
	if err = hexFixed(wi.Attributes, name+".attributes", id.Attributes[:]); err != nil {
		return id, err
	}
	if err = hexFixed(wi.AttributesMask, name+".attributesMask", id.AttributesMask[:]); err != nil {
		return id, err
	}
	if len(wi.TCBLevels) == 0 {
		return id, fmt.Errorf("field %s.tcbLevels missing or empty", name)
	}
	for j, wl := range wi.TCBLevels {
		lname := fmt.Sprintf("%s.tcbLevels[%d]", name, j)
		var l TDXModuleTCBLevel
		if wl.TCB == nil || wl.TCB.ISVSVN == nil {
			return id, fmt.Errorf("field %s.tcb.isvsvn missing", lname)
		}
		l.ISVSVN = *wl.TCB.ISVSVN
		if l.TCBDate, err = parseTime(wl.TCBDate, lname+".tcbDate"); err != nil {
			return id, err
		}
		if l.TCBStatus, err = req(wl.TCBStatus, lname+".tcbStatus"); err != nil {
			return id, err
		}
		l.AdvisoryIDs = wl.AdvisoryIDs
		id.TCBLevels = append(id.TCBLevels, l)
	}
	return id, nil
}

// parseTCBLevel parses one of tcbLevels (with TDX components for a TDX
// TCB Info, without for SGX); name is its field path in errors.
func parseTCBLevel(wl wireTCBLevel, name string, isTDX bool) (TCBLevel, error) {
	var l TCBLevel
	var err error
	if wl.TCB == nil {
		return l, fmt.Errorf("field %s.tcb missing", name)
	}
	if l.SGXComponents, err = components(wl.TCB.SGXComponents, name+".tcb.sgxtcbcomponents"); err != nil {
		return l, err
	}
	if l.PCESVN, err = req(wl.TCB.PCESVN, name+".tcb.pcesvn"); err != nil {
		return l, err
	}
	if isTDX {
		if l.TDXComponents, err = components(wl.TCB.TDXComponents, name+".tcb.tdxtcbcomponents"); err != nil {
			return l, err
		}
		l.HasTDXComponents = true
	} else if wl.TCB.TDXComponents != nil {
		return l, fmt.Errorf("field %s.tcb.tdxtcbcomponents in SGX TCB Info", name)
	}
	if l.TCBDate, err = parseTime(wl.TCBDate, name+".tcbDate"); err != nil {
		return l, err
	}
	if l.TCBStatus, err = req(wl.TCBStatus, name+".tcbStatus"); err != nil {
		return l, err
	}
	l.AdvisoryIDs = wl.AdvisoryIDs
	return l, nil
}

// FindTDXModuleIdentity returns the module identity whose id matches
// "TDX_%02X" of the given major version (compared case-insensitively).
func (t *TCBInfo) FindTDXModuleIdentity(version uint8) *TDXModuleIdentity {
	want := fmt.Sprintf("TDX_%02X", version)
	for i := range t.TDXModuleIdentities {
		if strings.EqualFold(t.TDXModuleIdentities[i].ID, want) {
			return &t.TDXModuleIdentities[i]
		}
	}
	return nil
}
