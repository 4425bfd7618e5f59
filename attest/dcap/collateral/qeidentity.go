package collateral

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Enclave identity ids.
const (
	QEIdentityIDQE   = "QE"
	QEIdentityIDTDQE = "TD_QE"
	QEIdentityIDQVE  = "QVE"
)

// QEIdentity is a parsed Enclave Identity (version 2) body, as used for the
// SGX QE ("QE") and the TDX QE ("TD_QE").
type QEIdentity struct {
	ID                      string
	Version                 int
	IssueDate               time.Time
	NextUpdate              time.Time
	TCBEvaluationDataNumber int
	// MiscSelect and MiscSelectMask are the hex bytes read as a
	// little-endian uint32, like the report's MISCSELECT.
	MiscSelect     uint32
	MiscSelectMask uint32
	Attributes     [16]byte
	AttributesMask [16]byte
	MRSigner       [32]byte
	ISVProdID      uint16
	TCBLevels      []QETCBLevel
}

// QETCBLevel is a TCB level of an enclave identity.
type QETCBLevel struct {
	ISVSVN      uint16
	TCBDate     time.Time
	TCBStatus   string
	AdvisoryIDs []string
}

type wireQEIdentity struct {
	ID                      *string `json:"id"`
	Version                 *int    `json:"version"`
	IssueDate               *string `json:"issueDate"`
	NextUpdate              *string `json:"nextUpdate"`
	TCBEvaluationDataNumber *int    `json:"tcbEvaluationDataNumber"`
	MiscSelect              *string `json:"miscselect"`
	MiscSelectMask          *string `json:"miscselectMask"`
	Attributes              *string `json:"attributes"`
	AttributesMask          *string `json:"attributesMask"`
	MRSigner                *string `json:"mrsigner"`
	ISVProdID               *uint16 `json:"isvprodid"`
	TCBLevels               []struct {
		TCB *struct {
			ISVSVN *uint16 `json:"isvsvn"`
		} `json:"tcb"`
		TCBDate     *string  `json:"tcbDate"`
		TCBStatus   *string  `json:"tcbStatus"`
		AdvisoryIDs []string `json:"advisoryIDs"`
	} `json:"tcbLevels"`
}

// ParseQEIdentity parses an Enclave Identity body (the exact signed JSON).
// Version 2 is supported.
func ParseQEIdentity(b []byte) (*QEIdentity, error) {
	q, err := parseQEIdentity(b)
	if err != nil {
		return nil, fmt.Errorf("collateral: qe identity: %w", err)
	}
	return q, nil
}

func parseQEIdentity(b []byte) (*QEIdentity, error) {
	var w wireQEIdentity
	if err := decodeStrict(b, &w); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	q := &QEIdentity{}
	var err error
	if q.ID, err = req(w.ID, "id"); err != nil {
		return nil, err
	}
	switch q.ID {
	case QEIdentityIDQE, QEIdentityIDTDQE, QEIdentityIDQVE:
	default:
		return nil, fmt.Errorf("field id: unknown id %q", q.ID)
	}
	if q.Version, err = req(w.Version, "version"); err != nil {
		return nil, err
	}
	if q.Version != 2 {
		return nil, fmt.Errorf("field version: unsupported version %d (want 2)", q.Version)
	}
	if q.IssueDate, err = parseTime(w.IssueDate, "issueDate"); err != nil {
		return nil, err
	}
	if q.NextUpdate, err = parseTime(w.NextUpdate, "nextUpdate"); err != nil {
		return nil, err
	}
	if !q.NextUpdate.After(q.IssueDate) {
		return nil, errors.New("field nextUpdate: not after issueDate")
	}
	if q.TCBEvaluationDataNumber, err = req(w.TCBEvaluationDataNumber, "tcbEvaluationDataNumber"); err != nil {
		return nil, err
	}
	var ms, msm [4]byte
	if err = hexFixed(w.MiscSelect, "miscselect", ms[:]); err != nil {
		return nil, err
	}
	if err = hexFixed(w.MiscSelectMask, "miscselectMask", msm[:]); err != nil {
		return nil, err
	}
	q.MiscSelect = binary.LittleEndian.Uint32(ms[:])
	q.MiscSelectMask = binary.LittleEndian.Uint32(msm[:])
	if err = hexFixed(w.Attributes, "attributes", q.Attributes[:]); err != nil {
		return nil, err
	}
	if err = hexFixed(w.AttributesMask, "attributesMask", q.AttributesMask[:]); err != nil {
		return nil, err
	}
	if err = hexFixed(w.MRSigner, "mrsigner", q.MRSigner[:]); err != nil {
		return nil, err
	}
	if q.ISVProdID, err = req(w.ISVProdID, "isvprodid"); err != nil {
		return nil, err
	}
	if len(w.TCBLevels) == 0 {
		return nil, errors.New("field tcbLevels missing or empty")
	}
	for i, wl := range w.TCBLevels {
		name := fmt.Sprintf("tcbLevels[%d]", i)
		var l QETCBLevel
		if wl.TCB == nil || wl.TCB.ISVSVN == nil {
			return nil, fmt.Errorf("field %s.tcb.isvsvn missing", name)
		}
		l.ISVSVN = *wl.TCB.ISVSVN
		if l.TCBDate, err = parseTime(wl.TCBDate, name+".tcbDate"); err != nil {
			return nil, err
		}
		if l.TCBStatus, err = req(wl.TCBStatus, name+".tcbStatus"); err != nil {
			return nil, err
		}
		l.AdvisoryIDs = wl.AdvisoryIDs
		q.TCBLevels = append(q.TCBLevels, l)
	}
	return q, nil
}
