package attest

import (
	"fmt"
	"strings"
	"time"
)

// Field is one named, printable claim.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Fields lists the claims that apply to c's TEE in a fixed order, as
// printable strings (measurements in lower-case hex), for CLI output and
// logs. Simulated claims lead with a "simulated" field so no output shows
// them without saying so.
func (c *Claims) Fields() []Field {
	var f []Field
	add := func(name, v string) { f = append(f, Field{name, v}) }
	if c.Simulated {
		add("simulated", "true (SIMULATED attestation: no hardware protection)")
	}
	add("tee", string(c.TEE))
	switch c.TEE {
	case SGX:
		add("mr_enclave", Hex(c.MREnclave))
		add("mr_signer", Hex(c.MRSigner))
		add("isv_prod_id", fmt.Sprint(c.ISVProdID))
		add("isv_svn", fmt.Sprint(c.ISVSVN))
		add("attributes", Hex(c.Attributes))
	case TDX:
		add("mrtd", Hex(c.MRTD))
		for i, r := range c.RTMR {
			add(fmt.Sprintf("rtmr%d", i), Hex(r))
		}
		add("mr_config_id", Hex(c.MRConfigID))
		add("mr_owner", Hex(c.MROwner))
		add("td_attributes", Hex(c.TDAttributes))
		add("xfam", Hex(c.XFAM))
		if c.MRServiceTD != nil {
			add("mr_service_td", Hex(c.MRServiceTD))
			add("tee_tcb_svn_2", Hex(c.TEETCBSVN2))
		}
	case SNP:
		add("measurement", Hex(c.Measurement))
		add("policy", fmt.Sprintf("%#x", c.SNPPolicy))
		add("host_data", Hex(c.HostData))
		add("current_tcb", fmt.Sprintf("0x%016x", c.SNPCurrentTCB))
		add("committed_tcb", fmt.Sprintf("0x%016x", c.SNPCommittedTCB))
	}
	add("debug", fmt.Sprint(c.Debug))
	add("report_data", Hex(c.ReportData))
	if c.FMSPC != "" {
		add("fmspc", c.FMSPC)
	}
	add("tcb_status", string(c.TCBStatus))
	adv := "none"
	if len(c.AdvisoryIDs) > 0 {
		adv = strings.Join(c.AdvisoryIDs, ", ")
	}
	add("advisory_ids", adv)
	if !c.ValidUntil.IsZero() {
		add("valid_until", c.ValidUntil.UTC().Format(time.RFC3339))
	}
	return f
}
