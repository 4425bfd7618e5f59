package abi

import "encoding/binary"

// EnclaveReport is the 384-byte SGX report body (sgx_report_body_t). It is
// the body of SGX quotes and also the QE report inside the signature data.
type EnclaveReport struct {
	CPUSVN       [16]byte
	MiscSelect   uint32
	Reserved1    [12]byte
	ISVExtProdID [16]byte
	// Attributes is flags (little-endian uint64) ‖ xfrm (uint64).
	Attributes  [16]byte
	MREnclave   [32]byte
	Reserved2   [32]byte
	MRSigner    [32]byte
	Reserved3   [32]byte
	ConfigID    [64]byte
	ISVProdID   uint16
	ISVSVN      uint16
	ConfigSVN   uint16
	Reserved4   [42]byte
	ISVFamilyID [16]byte
	ReportData  [64]byte
}

// SGX attribute flag bits (first byte of Attributes).
const (
	SGXAttrInit         = 0x01
	SGXAttrDebug        = 0x02
	SGXAttrMode64Bit    = 0x04
	SGXAttrProvisionKey = 0x10
	SGXAttrEInitToken   = 0x20
	SGXAttrKSS          = 0x80
)

// Debug reports whether the SGX DEBUG attribute flag is set.
func (r *EnclaveReport) Debug() bool { return r.Attributes[0]&SGXAttrDebug != 0 }

// ParseEnclaveReport parses exactly EnclaveReportSize bytes.
func ParseEnclaveReport(b []byte) (*EnclaveReport, error) {
	return parseEnclaveReportAs("enclave report", b)
}

func parseEnclaveReportAs(st string, b []byte) (*EnclaveReport, error) {
	if err := exactLen(st, b, EnclaveReportSize); err != nil {
		return nil, err
	}
	// The length is exact, so fixed offsets are in bounds.
	e := &EnclaveReport{}
	copy(e.CPUSVN[:], b[0:16])
	e.MiscSelect = binary.LittleEndian.Uint32(b[16:20])
	copy(e.Reserved1[:], b[20:32])
	copy(e.ISVExtProdID[:], b[32:48])
	copy(e.Attributes[:], b[48:64])
	copy(e.MREnclave[:], b[64:96])
	copy(e.Reserved2[:], b[96:128])
	copy(e.MRSigner[:], b[128:160])
	copy(e.Reserved3[:], b[160:192])
	copy(e.ConfigID[:], b[192:256])
	e.ISVProdID = binary.LittleEndian.Uint16(b[256:258])
	e.ISVSVN = binary.LittleEndian.Uint16(b[258:260])
	e.ConfigSVN = binary.LittleEndian.Uint16(b[260:262])
	copy(e.Reserved4[:], b[262:304])
	copy(e.ISVFamilyID[:], b[304:320])
	copy(e.ReportData[:], b[320:384])
	return e, nil
}

// Marshal encodes the report in its 384-byte form.
func (e *EnclaveReport) Marshal() []byte {
	b := make([]byte, 0, EnclaveReportSize)
	b = append(b, e.CPUSVN[:]...)
	b = putU32(b, e.MiscSelect)
	b = append(b, e.Reserved1[:]...)
	b = append(b, e.ISVExtProdID[:]...)
	b = append(b, e.Attributes[:]...)
	b = append(b, e.MREnclave[:]...)
	b = append(b, e.Reserved2[:]...)
	b = append(b, e.MRSigner[:]...)
	b = append(b, e.Reserved3[:]...)
	b = append(b, e.ConfigID[:]...)
	b = putU16(b, e.ISVProdID)
	b = putU16(b, e.ISVSVN)
	b = putU16(b, e.ConfigSVN)
	b = append(b, e.Reserved4[:]...)
	b = append(b, e.ISVFamilyID[:]...)
	b = append(b, e.ReportData[:]...)
	return b
}

// TDReport10 is the 584-byte TDX 1.0 TD report body (quote v4, or v5 body
// type 2).
type TDReport10 struct {
	TEETCBSVN      [16]byte
	MRSEAM         [48]byte
	MRSignerSEAM   [48]byte
	SEAMAttributes [8]byte
	TDAttributes   [8]byte
	XFAM           [8]byte
	MRTD           [48]byte
	MRConfigID     [48]byte
	MROwner        [48]byte
	MROwnerConfig  [48]byte
	RTMR           [4][48]byte
	ReportData     [64]byte
}

// TDX TD attribute bits (first byte of TDAttributes, the TUD field).
const TDAttrDebug = 0x01

// Debug reports whether the TD DEBUG attribute bit is set.
func (t *TDReport10) Debug() bool { return t.TDAttributes[0]&TDAttrDebug != 0 }

// TDReport15 is the 648-byte TDX 1.5 TD report body (quote v5 body type 3).
type TDReport15 struct {
	TDReport10
	TEETCBSVN2  [16]byte
	MRServiceTD [48]byte
}

// ParseTDReport10 parses exactly TDReport10Size bytes.
func ParseTDReport10(b []byte) (*TDReport10, error) {
	if err := exactLen("td report 1.0", b, TDReport10Size); err != nil {
		return nil, err
	}
	t := &TDReport10{}
	r := &reader{st: "td report 1.0", b: b}
	if err := t.read(r); err != nil {
		return nil, err
	}
	return t, r.end("report_data")
}

func (t *TDReport10) read(r *reader) error {
	fields := []struct {
		name string
		dst  []byte
	}{
		{"tee_tcb_svn", t.TEETCBSVN[:]},
		{"mr_seam", t.MRSEAM[:]},
		{"mr_signer_seam", t.MRSignerSEAM[:]},
		{"seam_attributes", t.SEAMAttributes[:]},
		{"td_attributes", t.TDAttributes[:]},
		{"xfam", t.XFAM[:]},
		{"mr_td", t.MRTD[:]},
		{"mr_config_id", t.MRConfigID[:]},
		{"mr_owner", t.MROwner[:]},
		{"mr_owner_config", t.MROwnerConfig[:]},
		{"rtmr0", t.RTMR[0][:]},
		{"rtmr1", t.RTMR[1][:]},
		{"rtmr2", t.RTMR[2][:]},
		{"rtmr3", t.RTMR[3][:]},
		{"report_data", t.ReportData[:]},
	}
	for _, f := range fields {
		if err := r.into(f.name, f.dst); err != nil {
			return err
		}
	}
	return nil
}

// ParseTDReport15 parses exactly TDReport15Size bytes.
func ParseTDReport15(b []byte) (*TDReport15, error) {
	if err := exactLen("td report 1.5", b, TDReport15Size); err != nil {
		return nil, err
	}
	t := &TDReport15{}
	r := &reader{st: "td report 1.5", b: b}
	if err := t.TDReport10.read(r); err != nil {
		return nil, err
	}
	if err := r.into("tee_tcb_svn_2", t.TEETCBSVN2[:]); err != nil {
		return nil, err
	}
	if err := r.into("mr_service_td", t.MRServiceTD[:]); err != nil {
		return nil, err
	}
	return t, r.end("mr_service_td")
}

// Marshal encodes the report in its 584-byte form.
func (t *TDReport10) Marshal() []byte {
	b := make([]byte, 0, TDReport10Size)
	b = append(b, t.TEETCBSVN[:]...)
	b = append(b, t.MRSEAM[:]...)
	b = append(b, t.MRSignerSEAM[:]...)
	b = append(b, t.SEAMAttributes[:]...)
	b = append(b, t.TDAttributes[:]...)
	b = append(b, t.XFAM[:]...)
	b = append(b, t.MRTD[:]...)
	b = append(b, t.MRConfigID[:]...)
	b = append(b, t.MROwner[:]...)
	b = append(b, t.MROwnerConfig[:]...)
	for i := range t.RTMR {
		b = append(b, t.RTMR[i][:]...)
	}
	b = append(b, t.ReportData[:]...)
	return b
}

// Marshal encodes the report in its 648-byte form.
func (t *TDReport15) Marshal() []byte {
	b := t.TDReport10.Marshal()
	b = append(b, t.TEETCBSVN2[:]...)
	b = append(b, t.MRServiceTD[:]...)
	return b
}
