package verifier

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-sev-guest/abi"

	"github.com/teeml/teeml/attest"
	dcapabi "github.com/teeml/teeml/attest/dcap/abi"
	"github.com/teeml/teeml/attest/sim"
)

// Inspect parses evidence and lists its fields without verifying anything.
// Nothing it returns may be trusted; it is for people looking at a file.
func Inspect(b []byte) ([]attest.Field, error) {
	k, err := Detect(b)
	if err != nil {
		return nil, err
	}
	f := []attest.Field{{Name: "format", Value: k.Format}, {Name: "tee", Value: string(k.TEE)}}
	add := func(n, v string) { f = append(f, attest.Field{Name: n, Value: v}) }
	h := attest.Hex
	switch {
	case k.Simulated:
		q, err := sim.ParseQuote(b)
		if err != nil {
			return nil, err
		}
		add("simulated", "true (SIMULATED attestation: no hardware protection)")
		add("mr_enclave", h(q.MREnclave[:]))
		add("mr_signer", h(q.MRSigner[:]))
		add("mrtd", h(q.MRTD[:]))
		add("measurement", h(q.Measurement[:]))
		add("debug", fmt.Sprint(q.Debug))
		add("report_data", h(q.ReportData[:]))
		add("sim_key_id", h(q.KeyID[:]))
	case k.TEE == attest.SNP:
		r, err := abi.ReportToProto(b)
		if err != nil {
			return nil, fmt.Errorf("evidence: SEV-SNP report: %w", err)
		}
		add("version", fmt.Sprint(r.Version))
		add("policy", fmt.Sprintf("%#x", r.Policy))
		add("debug", fmt.Sprint(r.Policy&(1<<19) != 0))
		add("measurement", h(r.Measurement))
		add("host_data", h(r.HostData))
		add("report_data", h(r.ReportData))
		add("chip_id", h(r.ChipId))
		add("reported_tcb", fmt.Sprintf("%#x", r.ReportedTcb))
		add("vmpl", fmt.Sprint(r.Vmpl))
	default:
		q, err := dcapabi.ParseQuote(b)
		if err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
		add("version", fmt.Sprint(q.Header.Version))
		add("attestation_key_type", fmt.Sprint(q.Header.AttestationKeyType))
		add("qe_vendor_id", h(q.Header.QEVendorID[:]))
		if r := q.SGXReport; r != nil {
			add("mr_enclave", h(r.MREnclave[:]))
			add("mr_signer", h(r.MRSigner[:]))
			add("isv_prod_id", fmt.Sprint(r.ISVProdID))
			add("isv_svn", fmt.Sprint(r.ISVSVN))
			add("attributes", h(r.Attributes[:]))
			add("attributes_flags", fmt.Sprintf("%#x", binary.LittleEndian.Uint64(r.Attributes[:8])))
			add("debug", fmt.Sprint(r.Debug()))
			add("cpu_svn", h(r.CPUSVN[:]))
			add("report_data", h(r.ReportData[:]))
		}
		if r := q.TDReport; r != nil {
			add("mrtd", h(r.MRTD[:]))
			for i := range r.RTMR {
				add(fmt.Sprintf("rtmr%d", i), h(r.RTMR[i][:]))
			}
			add("td_attributes", h(r.TDAttributes[:]))
			add("debug", fmt.Sprint(r.Debug()))
			add("tee_tcb_svn", h(r.TEETCBSVN[:]))
			add("mrseam", h(r.MRSEAM[:]))
			add("report_data", h(r.ReportData[:]))
		}
		if r := q.TDReport15; r != nil {
			add("tee_tcb_svn_2", h(r.TEETCBSVN2[:]))
			add("mr_service_td", h(r.MRServiceTD[:]))
		}
	}
	return f, nil
}
