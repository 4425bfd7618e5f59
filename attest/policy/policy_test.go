package policy

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/sim"
	"github.com/teeml/teeml/internal/yamlx"
)

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
func hx(b byte, n int) string  { return hex.EncodeToString(rep(b, n)) }

var (
	mrEnclaveA = rep(0x3f, 32)
	mrEnclaveB = rep(0x9c, 32)
	mrSigner   = rep(0x51, 32)
	mrtd       = rep(0x7d, 48)
	rtmr0      = rep(0x70, 48)
	snpMeas    = rep(0x5e, 48)
	hostData   = rep(0x4d, 32)
)

var testYAML = `
# teeml policy
roles:
  aggregator:
    sgx:
      - mr_enclave: "` + hx(0x3f, 32) + `"
        mr_signer: "` + hx(0x51, 32) + `"
        isv_prod_id: 1
        min_isv_svn: 2
      - mr_enclave: "` + hx(0x9c, 32) + `"
    tdx:
      - mrtd: "` + hx(0x7d, 48) + `"
        rtmr0: "` + hx(0x70, 48) + `"
    snp:
      - measurement: "` + hx(0x5e, 48) + `"
        host_data: "` + hx(0x4d, 32) + `"
    allow_debug: false
    tcb_statuses: [UpToDate, SWHardeningNeeded]
    advisory_ids: [INTEL-SA-00289]
    allow_simulation: false
  collaborator:
    sgx:
      - mr_signer: "` + hx(0x51, 32) + `"
        isv_prod_id: 1
`

func mustParse(t *testing.T, y string) *Policy {
	t.Helper()
	p, err := Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sgxClaims are claims as a DCAP verifier would return them for the first
// aggregator entry.
func sgxClaims() *attest.Claims {
	return &attest.Claims{
		TEE:        attest.SGX,
		MREnclave:  bytes.Clone(mrEnclaveA),
		MRSigner:   bytes.Clone(mrSigner),
		ISVProdID:  1,
		ISVSVN:     2,
		Attributes: make([]byte, 16),
		ReportData: append([]byte("nonce"), make([]byte, 59)...),
		TCBStatus:  attest.UpToDate,
		ValidUntil: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func quiet() Option { return Logger(slog.New(slog.DiscardHandler)) }

func TestParseFull(t *testing.T) {
	p := mustParse(t, testYAML)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	a := p.Roles["aggregator"]
	if a == nil || len(a.SGX) != 2 || len(a.TDX) != 1 || len(a.SNP) != 1 {
		t.Fatalf("aggregator = %+v", a)
	}
	e := a.SGX[0]
	if !bytes.Equal(e.MREnclave, mrEnclaveA) || !bytes.Equal(e.MRSigner, mrSigner) || *e.ISVProdID != 1 || *e.MinISVSVN != 2 || e.ISVSVN != nil {
		t.Fatalf("sgx entry 0 = %+v", e)
	}
	if a.SGX[1].MRSigner != nil || a.SGX[1].ISVProdID != nil {
		t.Fatalf("sgx entry 1 = %+v", a.SGX[1])
	}
	if !bytes.Equal(a.TDX[0].RTMR[0], rtmr0) || a.TDX[0].RTMR[1] != nil || !bytes.Equal(a.SNP[0].HostData, hostData) {
		t.Fatalf("tdx/snp = %+v %+v", a.TDX, a.SNP)
	}
	if len(a.TCBStatuses) != 2 || a.TCBStatuses[1] != attest.SWHardeningNeeded || a.AdvisoryIDs[0] != "INTEL-SA-00289" || a.AllowDebug || a.AllowSimulation {
		t.Fatalf("role options = %+v", a)
	}
	if c := p.Roles["collaborator"]; c.TCBStatuses != nil || c.AdvisoryIDs != nil {
		t.Fatalf("collaborator defaults = %+v", c)
	}
}

func TestAccepted(t *testing.T) {
	p := mustParse(t, testYAML)
	d := p.Evaluate("aggregator", sgxClaims(), Peer("bank-b"), ReportDataPrefix([]byte("nonce")), ReportData([]byte("nonce")), At(time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)))
	if !d.Accepted || d.Err() != nil || d.MatchedEntry != 0 || len(d.Reasons) != 0 || len(d.Warnings) != 0 {
		t.Fatalf("decision = %+v", d)
	}
	if !strings.Contains(d.String(), `peer "bank-b" role aggregator: accepted (sgx entry 0)`) {
		t.Fatalf("String = %q", d.String())
	}
	c := sgxClaims()
	c.MREnclave, c.MRSigner = bytes.Clone(mrEnclaveB), rep(0, 32)
	if d := p.Evaluate("aggregator", c); !d.Accepted || d.MatchedEntry != 1 {
		t.Fatalf("second entry: %+v", d)
	}
	tdx := &attest.Claims{TEE: attest.TDX, MRTD: bytes.Clone(mrtd), TCBStatus: attest.UpToDate}
	tdx.RTMR[0] = bytes.Clone(rtmr0)
	if d := p.Evaluate("aggregator", tdx); !d.Accepted {
		t.Fatalf("tdx: %v", d.Err())
	}
	snp := &attest.Claims{TEE: attest.SNP, Measurement: bytes.Clone(snpMeas), HostData: bytes.Clone(hostData), TCBStatus: attest.UpToDate}
	if d := p.Evaluate("aggregator", snp); !d.Accepted {
		t.Fatalf("snp: %v", d.Err())
	}
	// Accepted with warnings: a listed non-UpToDate status and advisory.
	c = sgxClaims()
	c.TCBStatus, c.AdvisoryIDs = attest.SWHardeningNeeded, []string{"INTEL-SA-00289"}
	var logs bytes.Buffer
	var mu sync.Mutex
	l := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	d = p.Evaluate("aggregator", c, Logger(l))
	if !d.Accepted || len(d.Warnings) != 2 {
		t.Fatalf("warnings decision = %+v", d)
	}
	if !strings.Contains(logs.String(), "advisory INTEL-SA-00289 accepted") || !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("accepted-with-warnings not logged: %q", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestRefusalReasons(t *testing.T) {
	p := mustParse(t, testYAML)
	cases := []struct {
		name   string
		role   string
		claims func(c *attest.Claims) *attest.Claims
		opts   []Option
		want   string
	}{
		{"unknown role", "auditor", nil, nil, `role "auditor" not in policy`},
		{"nil claims", "aggregator", func(*attest.Claims) *attest.Claims { return nil }, nil, "no claims"},
		{"mr_enclave", "aggregator", func(c *attest.Claims) *attest.Claims { c.MREnclave = rep(0x11, 32); return c }, nil,
			"mr_enclave " + hx(0x11, 32) + " not in accepted list [" + hx(0x3f, 32) + ", " + hx(0x9c, 32) + "]"},
		{"min_isv_svn", "aggregator", func(c *attest.Claims) *attest.Claims { c.ISVSVN = 1; return c }, nil,
			"sgx entry 0: isv_svn 1 below min_isv_svn 2; sgx entry 1: mr_enclave " + hx(0x3f, 32) + ", want " + hx(0x9c, 32)},
		{"isv_prod_id", "collaborator", func(c *attest.Claims) *attest.Claims { c.ISVProdID = 4; return c }, nil,
			"isv_prod_id 4 not in accepted list [1]"},
		{"mr_signer", "collaborator", func(c *attest.Claims) *attest.Claims { c.MRSigner = rep(1, 32); return c }, nil,
			"mr_signer " + hx(1, 32) + " not in accepted list"},
		{"tcb status", "aggregator", func(c *attest.Claims) *attest.Claims {
			c.TCBStatus = attest.ConfigurationAndSWHardeningNeeded
			return c
		}, nil, "TCB status ConfigurationAndSWHardeningNeeded not accepted (accepted: UpToDate, SWHardeningNeeded)"},
		{"tcb default", "collaborator", func(c *attest.Claims) *attest.Claims { c.TCBStatus = attest.OutOfDate; return c }, nil,
			"TCB status OutOfDate not accepted (accepted: UpToDate)"},
		{"revoked", "aggregator", func(c *attest.Claims) *attest.Claims { c.TCBStatus = attest.Revoked; return c }, nil,
			"TCB status Revoked not accepted"},
		{"tcb missing", "aggregator", func(c *attest.Claims) *attest.Claims { c.TCBStatus = ""; return c }, nil, "TCB status missing"},
		{"unknown tcb not simulated", "aggregator", func(c *attest.Claims) *attest.Claims { c.TCBStatus = attest.TCBUnknown; return c }, nil,
			"TCB status Unknown not accepted"},
		{"advisory", "aggregator", func(c *attest.Claims) *attest.Claims {
			c.AdvisoryIDs = []string{"INTEL-SA-00289", "INTEL-SA-00615"}
			return c
		}, nil, "advisory INTEL-SA-00615 not accepted"},
		{"debug", "aggregator", func(c *attest.Claims) *attest.Claims { c.Debug = true; return c }, nil,
			"debug enclave refused (allow_debug: false)"},
		{"simulated", "aggregator", func(c *attest.Claims) *attest.Claims { c.Simulated = true; return c }, nil,
			"simulated evidence refused (allow_simulation: false)"},
		{"report data", "aggregator", nil, []Option{ReportData([]byte("other"))}, "report data " + hex.EncodeToString([]byte("nonce"))},
		{"report data prefix", "aggregator", nil, []Option{ReportDataPrefix([]byte("nonc3"))}, "does not start with expected " + hex.EncodeToString([]byte("nonc3"))},
		{"report data too long", "aggregator", nil, []Option{ReportData(make([]byte, 65))}, "expected report data is 65 bytes"},
		{"report data empty", "aggregator", nil, []Option{ReportData(nil)}, "expected report data is empty"},
		{"report data prefix empty", "aggregator", nil, []Option{ReportDataPrefix([]byte{})}, "expected report data prefix is empty"},
		{"expired", "aggregator", nil, []Option{At(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))}, "claims expired at 2030-01-01T00:00:00Z"},
		{"no tdx entries", "collaborator", func(c *attest.Claims) *attest.Claims {
			return &attest.Claims{TEE: attest.TDX, MRTD: mrtd, TCBStatus: attest.UpToDate}
		}, nil, "no tdx identities accepted for this role"},
		{"unknown TEE", "aggregator", func(c *attest.Claims) *attest.Claims { c.TEE = "sev"; return c }, nil, `unknown TEE "sev"`},
		{"tdx rtmr", "aggregator", func(c *attest.Claims) *attest.Claims {
			t := &attest.Claims{TEE: attest.TDX, MRTD: mrtd, TCBStatus: attest.UpToDate}
			t.RTMR[0] = rep(0, 48)
			return t
		}, nil, "rtmr0 " + hx(0, 48) + " not in accepted list"},
		{"snp host_data", "aggregator", func(c *attest.Claims) *attest.Claims {
			return &attest.Claims{TEE: attest.SNP, Measurement: snpMeas, HostData: rep(0, 32), TCBStatus: attest.UpToDate, Debug: true}
		}, nil, "debug guest refused (allow_debug: false); host_data " + hx(0, 32) + " not in accepted list"},
		{"snp measurement missing", "aggregator", func(c *attest.Claims) *attest.Claims {
			return &attest.Claims{TEE: attest.SNP, TCBStatus: attest.UpToDate}
		}, nil, "measurement (none) not in accepted list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := sgxClaims()
			if tc.claims != nil {
				c = tc.claims(c)
			}
			d := p.Evaluate(tc.role, c, append([]Option{Peer("bank-b"), quiet()}, tc.opts...)...)
			if d.Accepted {
				t.Fatalf("accepted: %+v", d)
			}
			err := d.Err()
			if err == nil {
				t.Fatal("refused decision has nil Err")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, `policy: peer "bank-b" role `+tc.role+": ") {
				t.Fatalf("error %q lacks subject", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", msg, tc.want)
			}
			if strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			var re *RefusedError
			if !errors.As(err, &re) || re.Decision.Role != tc.role {
				t.Fatalf("Err is not a *RefusedError: %T", err)
			}
		})
	}
}

func TestAllReasonsReported(t *testing.T) {
	p := mustParse(t, testYAML)
	c := sgxClaims()
	c.Simulated, c.Debug, c.TCBStatus, c.MREnclave = true, true, attest.OutOfDate, rep(0, 32)
	d := p.Evaluate("aggregator", c, quiet())
	if len(d.Reasons) != 4 {
		t.Fatalf("reasons = %q, want simulation, debug, TCB and mr_enclave", d.Reasons)
	}
}

func TestZeroPolicyRefusesEverything(t *testing.T) {
	for name, p := range map[string]*Policy{"nil": nil, "zero": {}, "empty role": {Roles: map[string]*Role{"aggregator": {}}}} {
		for _, c := range []*attest.Claims{sgxClaims(), {TEE: attest.SGX, Simulated: true, TCBStatus: attest.TCBUnknown}} {
			if d := p.Evaluate("aggregator", c, quiet()); d.Accepted || d.Err() == nil {
				t.Fatalf("%s policy accepted %+v", name, c)
			}
		}
	}
	// An entry with no identity field (only possible in code) matches nothing.
	pid := uint16(1)
	p := &Policy{Roles: map[string]*Role{"r": {SGX: []SGXEntry{{ISVProdID: &pid}}}}}
	d := p.Evaluate("r", sgxClaims(), quiet())
	if d.Accepted || !strings.Contains(d.Err().Error(), "sgx entry 0: entry has no identity field") {
		t.Fatalf("identity-less entry: %+v", d)
	}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "needs mr_enclave or mr_signer") {
		t.Fatalf("Validate = %v", err)
	}
}

// simClaims verifies a quote from a simulated issuer imitating the first
// aggregator entry.
func simClaims(t *testing.T, debug bool) *attest.Claims {
	t.Helper()
	key, err := sim.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id := sim.Identity{TEE: attest.SGX, ISVProdID: 1, ISVSVN: 2, Debug: debug}
	copy(id.MREnclave[:], mrEnclaveA)
	copy(id.MRSigner[:], mrSigner)
	iss, err := sim.NewIssuer(key, id)
	if err != nil {
		t.Fatal(err)
	}
	iss.Logger = slog.New(slog.DiscardHandler)
	v, err := sim.NewVerifier(iss.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	v.Logger = iss.Logger
	ev, err := iss.Issue(context.Background(), []byte("nonce"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), ev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSimulation(t *testing.T) {
	c := simClaims(t, false)
	p := mustParse(t, testYAML)
	d := p.Evaluate("aggregator", c, quiet())
	if d.Accepted || len(d.Reasons) != 1 || d.Reasons[0] != "simulated evidence refused (allow_simulation: false)" || !d.Simulated {
		t.Fatalf("default policy on simulated claims: %+v", d)
	}
	p.Roles["aggregator"].AllowSimulation = true
	var logs bytes.Buffer
	var mu sync.Mutex
	d = p.Evaluate("aggregator", c, ReportData([]byte("nonce")), Logger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))))
	if !d.Accepted || d.MatchedEntry != 0 || len(d.Warnings) != 1 {
		t.Fatalf("allow_simulation: %+v", d)
	}
	if !strings.Contains(d.String(), "SIMULATED") || !strings.Contains(logs.String(), "SIMULATED evidence accepted") {
		t.Fatalf("accepting simulation not announced: %q / %q", d.String(), logs.String())
	}
	// Simulation does not bypass identity.
	p.Roles["aggregator"].SGX = p.Roles["aggregator"].SGX[1:]
	if d := p.Evaluate("aggregator", c, quiet()); d.Accepted {
		t.Fatal("simulated claims accepted without matching identity")
	}
}

func TestDebugRefused(t *testing.T) {
	// A simulated quote whose debug attribute is set.
	p := mustParse(t, testYAML)
	p.Roles["aggregator"].AllowSimulation = true
	c := simClaims(t, true)
	if !c.Debug || c.Attributes[0]&2 == 0 {
		t.Fatalf("simulated debug quote gave claims %+v", c)
	}
	d := p.Evaluate("aggregator", c, quiet())
	if d.Accepted || !strings.Contains(d.Err().Error(), "debug enclave refused (allow_debug: false)") {
		t.Fatalf("simulated debug: %+v", d)
	}
	p.Roles["aggregator"].AllowDebug = true
	if d := p.Evaluate("aggregator", c, quiet()); !d.Accepted || len(d.Warnings) != 2 {
		t.Fatalf("allow_debug + allow_simulation: %+v", d)
	}

	// Real-looking claims, accepted, then the Debug flag set after parsing.
	p = mustParse(t, testYAML)
	c = sgxClaims()
	if d := p.Evaluate("aggregator", c, quiet()); !d.Accepted {
		t.Fatalf("baseline refused: %v", d.Err())
	}
	c.Debug = true
	if d := p.Evaluate("aggregator", c, quiet()); d.Accepted || d.Reasons[0] != "debug enclave refused (allow_debug: false)" {
		t.Fatalf("debug claims: %+v", d)
	}
	tdx := &attest.Claims{TEE: attest.TDX, MRTD: mrtd, TCBStatus: attest.UpToDate, Debug: true}
	tdx.RTMR[0] = rtmr0
	if d := p.Evaluate("aggregator", tdx, quiet()); d.Accepted || d.Reasons[0] != "debug trust domain refused (allow_debug: false)" {
		t.Fatalf("debug TD: %+v", d)
	}
}

func TestYAMLErrors(t *testing.T) {
	mre := `"` + hx(1, 32) + `"`
	// Every error is one line, file:line: dotted.key: reason (internal/yamlx).
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "test.yaml: policy is empty"},
		{"comment only", "# nothing\n", "test.yaml: policy is empty"},
		{"not a mapping", "- a\n", "test.yaml:1: must be a mapping, got a list"},
		{"unknown top key", "roles:\n  r:\n    sgx:\n      - mr_enclave: " + mre + "\nrolez: {}\n", `test.yaml:5: rolez: unknown key (known in policy: roles)`},
		{"missing roles", "{}\n", `test.yaml:1: roles: missing`},
		{"no roles", "roles: {}\n", "test.yaml:1: roles: no roles"},
		{"empty role name", "roles:\n  \"\": {}\n", `test.yaml:2: roles."": empty role name`},
		{"unknown role key", "roles:\n  aggregator:\n    sgx:\n      - mr_enclave: " + mre + "\n    allow_debugs: true\n",
			`test.yaml:5: roles.aggregator.allow_debugs: unknown key (known in roles.aggregator: sgx, tdx, snp, allow_debug, tcb_statuses, advisory_ids, allow_simulation, snp_allow_committed_tcb_below_current)`},
		{"quoted role", "roles:\n  a b:\n    allow_debugs: true\n", `test.yaml:3: roles."a b".allow_debugs: unknown key`},
		{"unknown entry key", "roles:\n  r:\n    sgx:\n      - mr_enclave: " + mre + "\n        mrenclave: x\n", `test.yaml:5: roles.r.sgx[0].mrenclave: unknown key (known in roles.r.sgx[0]: mr_enclave,`},
		{"entry without identity", "roles:\n  r:\n    sgx:\n      - isv_prod_id: 0\n", "test.yaml:4: roles.r.sgx[0]: needs mr_enclave or mr_signer"},
		{"tdx without identity", "roles:\n  r:\n    tdx:\n      - xfam: \"" + hx(0, 8) + "\"\n", "test.yaml:4: roles.r.tdx[0]: needs mrtd or an rtmr"},
		{"snp host_data only", "roles:\n  r:\n    snp:\n      - host_data: \"" + hx(0, 32) + "\"\n", "test.yaml:4: roles.r.snp[0]: needs measurement"},
		{"short mr_enclave", "roles:\n  r:\n    sgx:\n      - mr_enclave: \"" + hx(1, 31) + "\"\n", "test.yaml:4: roles.r.sgx[0].mr_enclave: 31 bytes, want 32"},
		{"mrtd length", "roles:\n  r:\n    tdx:\n      - mrtd: \"" + hx(1, 32) + "\"\n", "test.yaml:4: roles.r.tdx[0].mrtd: 32 bytes, want 48"},
		{"rtmr length", "roles:\n  r:\n    tdx:\n      - rtmr2: \"" + hx(1, 47) + "\"\n", "roles.r.tdx[0].rtmr2: 47 bytes, want 48"},
		{"measurement length", "roles:\n  r:\n    snp:\n      - measurement: \"" + hx(1, 32) + "\"\n", "roles.r.snp[0].measurement: 32 bytes, want 48"},
		{"not hex", "roles:\n  r:\n    sgx:\n      - mr_signer: \"zz\"\n", `test.yaml:4: roles.r.sgx[0].mr_signer: not hex: "zz"`},
		{"empty hex", "roles:\n  r:\n    sgx:\n      - mr_signer:\n", "test.yaml:4: roles.r.sgx[0].mr_signer: must be 32 bytes of hex, got nothing"},
		{"svn range", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n        min_isv_svn: 70000\n", `test.yaml:5: roles.r.sgx[0].min_isv_svn: must be an integer 0..65535, got "70000"`},
		{"svn string", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n        isv_prod_id: \"1\"\n", `roles.r.sgx[0].isv_prod_id: must be an integer 0..65535, got "1"`},
		{"svn both", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n        isv_svn: 1\n        min_isv_svn: 1\n", "test.yaml:4: roles.r.sgx[0]: set isv_svn (exact) or min_isv_svn, not both"},
		{"bool", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n    allow_debug: yes\n", `test.yaml:5: roles.r.allow_debug: must be true or false, got "yes"`},
		{"tcb unknown status", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n    tcb_statuses: [UpToDate, Uptodate]\n", `test.yaml:5: roles.r.tcb_statuses[1]: unknown TCB status "Uptodate" (known: UpToDate,`},
		{"tcb twice", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n    tcb_statuses: [UpToDate, UpToDate]\n", `test.yaml:5: roles.r.tcb_statuses[1]: UpToDate listed twice`},
		{"tcb revoked", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n    tcb_statuses:\n      - Revoked\n", "test.yaml:6: roles.r.tcb_statuses[0]: Revoked can never be accepted"},
		{"tcb empty", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n    tcb_statuses: []\n", "test.yaml:5: roles.r.tcb_statuses: empty: the role would refuse everything"},
		{"advisory", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n    advisory_ids: [\"INTEL SA\"]\n", `test.yaml:5: roles.r.advisory_ids[0]: "INTEL SA" is not an advisory ID`},
		{"role without entries", "roles:\n  r:\n    allow_debug: false\n", `test.yaml:2: roles.r: no sgx, tdx or snp entries`},
		{"duplicate key", "roles:\n  r:\n    sgx:\n      - mr_signer: " + mre + "\n        mr_signer: " + mre + "\n", `test.yaml:5: roles.r.sgx[0].mr_signer: duplicate key (first at line 4)`},
		{"duplicate role", "roles:\n  r:\n    sgx: [{mr_signer: " + mre + "}]\n  r:\n    sgx: [{mr_signer: " + mre + "}]\n", `test.yaml:4: roles.r: duplicate key (first at line 2)`},
		{"alias", "a: &x 1\nroles: *x\n", "test.yaml:1: YAML anchors and aliases are not supported"},
		{"merge key", "roles:\n  r:\n    <<: {allow_debug: true}\n", "test.yaml:3: YAML merge keys are not supported"},
		{"sgx not list", "roles:\n  r:\n    sgx: {mr_signer: " + mre + "}\n", "test.yaml:3: roles.r.sgx: must be a list, got a mapping"},
		{"syntax", "roles:\n  r: [\n", "test.yaml:2: did not find expected node content"},
		{"two docs", "roles: {}\n---\nroles: {}\n", "test.yaml:2: more than one YAML document"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.yaml), "test.yaml")
			if err == nil {
				t.Fatalf("parsed: %+v", p)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			var ye *yamlx.Error
			if !errors.As(err, &ye) || ye.File != "test.yaml" || !strings.HasPrefix(err.Error(), "test.yaml") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line starting with test.yaml", err)
			}
		})
	}
}

const ccZooJSON = `{
    "verify_mr_enclave": "on",
    "verify_mr_signer": "on",
    "verify_isv_prod_id": "on",
    "verify_isv_svn": "on",
    "sgx_mrs": [
        {
            "mr_enclave": "` + "3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f" + `",
            "mr_signer": "` + "5151515151515151515151515151515151515151515151515151515151515151" + `",
            "isv_prod_id": "1",
            "isv_svn": 2
        },
        {
            "mr_enclave": "` + "9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C9C" + `",
            "mr_signer": "` + "5151515151515151515151515151515151515151515151515151515151515151" + `",
            "isv_prod_id": "0",
            "isv_svn": "0"
        }
    ]
}`

func TestCCZoo(t *testing.T) {
	r, err := ParseCCZoo([]byte(ccZooJSON))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.SGX) != 2 || !bytes.Equal(r.SGX[0].MREnclave, mrEnclaveA) || !bytes.Equal(r.SGX[1].MREnclave, mrEnclaveB) ||
		*r.SGX[0].ISVProdID != 1 || *r.SGX[0].ISVSVN != 2 || r.SGX[0].MinISVSVN != nil || *r.SGX[1].ISVSVN != 0 {
		t.Fatalf("role = %+v", r)
	}
	if r.AllowDebug || r.AllowSimulation || r.TCBStatuses != nil {
		t.Fatalf("defaults = %+v", r)
	}
	p := &Policy{Roles: map[string]*Role{"collaborator": r}}
	if d := p.Evaluate("collaborator", sgxClaims(), quiet()); !d.Accepted {
		t.Fatal(d.Err())
	}
	// CCZoo compares isv_svn for equality: a higher SVN is refused.
	c := sgxClaims()
	c.ISVSVN = 3
	if d := p.Evaluate("collaborator", c, quiet()); d.Accepted || !strings.Contains(d.Err().Error(), "isv_svn 3 not in accepted list [2, 0]") {
		t.Fatalf("isv_svn 3: %+v", d)
	}
	// Switched-off fields are not checked.
	off := strings.Replace(strings.Replace(ccZooJSON, `"verify_isv_svn": "on"`, `"verify_isv_svn": "off"`, 1), `"verify_mr_enclave": "on"`, `"verify_mr_enclave": "off"`, 1)
	r, err = ParseCCZoo([]byte(off))
	if err != nil {
		t.Fatal(err)
	}
	if r.SGX[0].MREnclave != nil || r.SGX[0].ISVSVN != nil || r.SGX[0].MRSigner == nil {
		t.Fatalf("off fields kept: %+v", r.SGX[0])
	}
	p = &Policy{Roles: map[string]*Role{"collaborator": r}}
	c.MREnclave = rep(0x22, 32)
	if d := p.Evaluate("collaborator", c, quiet()); !d.Accepted {
		t.Fatal(d.Err())
	}
}

func TestCCZooErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"all off", strings.NewReplacer(`"verify_mr_enclave": "on"`, `"verify_mr_enclave": "off"`, `"verify_mr_signer": "on"`, `"verify_mr_signer": "off"`).Replace(ccZooJSON), "any enclave would be accepted"},
		{"bad switch", strings.Replace(ccZooJSON, `"verify_mr_signer": "on"`, `"verify_mr_signer": "o"`, 1), `verify_mr_signer is "o", want "on" or "off"`},
		{"missing switch", strings.Replace(ccZooJSON, `"verify_isv_svn": "on",`, ``, 1), "verify_isv_svn missing"},
		{"unknown key", strings.Replace(ccZooJSON, `"verify_isv_svn": "on",`, `"verify_isv_svn": "on", "verify_enclave_debuggable": "on",`, 1), `unknown field "verify_enclave_debuggable"`},
		{"short hex", strings.Replace(ccZooJSON, "3f3f3f3f", "", 1), `sgx_mrs[0].mr_enclave "3f3f`},
		{"empty hex", strings.Replace(ccZooJSON, "5151515151515151515151515151515151515151515151515151515151515151", "", 1), `sgx_mrs[0].mr_signer "" is not 64 hex digits`},
		{"svn range", strings.Replace(ccZooJSON, `"isv_svn": 2`, `"isv_svn": 65536`, 1), "sgx_mrs[0].isv_svn 65536 is not a decimal"},
		{"svn garbage", strings.Replace(ccZooJSON, `"isv_prod_id": "1"`, `"isv_prod_id": "one"`, 1), `sgx_mrs[0].isv_prod_id "one" is not a decimal`},
		{"svn missing", strings.Replace(ccZooJSON, `"isv_svn": 2`, `"isv_svm": 2`, 1), `unknown field "isv_svm"`},
		{"no mrs", `{"verify_mr_enclave":"on","verify_mr_signer":"on","verify_isv_prod_id":"on","verify_isv_svn":"on","sgx_mrs":[]}`, "sgx_mrs is empty"},
		{"duplicate", strings.Replace(ccZooJSON, `"verify_isv_svn": "on",`, `"verify_isv_svn": "on", "verify_isv_svn": "off",`, 1), `duplicate key "verify_isv_svn"`},
		{"trailing comma", strings.Replace(ccZooJSON, "    ]\n}", "    ],\n}", 1), "invalid character"},
		{"trailing data", ccZooJSON + "{}", "data after the JSON object"},
		{"in-enclave switch", strings.Replace(ccZooJSON, `"verify_isv_svn": "on",`, `"verify_isv_svn": "on", "verify_in_enclave": "yes",`, 1), `verify_in_enclave is "yes", want "on" or "off"`},
		{"mr missing", strings.Replace(ccZooJSON, `"mr_signer": "`+"5151515151515151515151515151515151515151515151515151515151515151"+`",`, ``, 1), "sgx_mrs[0].mr_signer missing while verify_mr_signer is on"},
		{"prod id missing", strings.Replace(ccZooJSON, `"isv_prod_id": "1",`, ``, 1), "sgx_mrs[0].isv_prod_id missing while verify_isv_prod_id is on"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseCCZoo([]byte(tc.in))
			if err == nil {
				t.Fatalf("parsed: %+v", r)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q\nwant one line containing %q", err, tc.want)
			}
		})
	}
}

func FuzzLoadPolicy(f *testing.F) {
	f.Add([]byte(testYAML))
	f.Add([]byte("roles:\n  r:\n    sgx:\n      - mr_signer: \"" + hx(1, 32) + "\"\n        min_isv_svn: 1\n"))
	f.Add([]byte("roles:\n  r:\n    tdx: [{rtmr3: \"" + hx(1, 48) + "\"}]\n    allow_simulation: true\n"))
	f.Add([]byte("a: &x 1\nroles: *x\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var ye *yamlx.Error
			if p != nil || strings.Contains(err.Error(), "\n") || !errors.As(err, &ye) || !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("bad error form: %q", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted a policy Validate refuses: %v", err)
		}
		for name := range p.Roles {
			if d := p.Evaluate(name, nil); d.Accepted {
				t.Fatal("nil claims accepted")
			}
			if d := p.Evaluate(name, &attest.Claims{TEE: attest.SGX, TCBStatus: attest.UpToDate}); d.Accepted {
				t.Fatal("identity-less claims accepted")
			}
		}
	})
}

func FuzzLoadCCZoo(f *testing.F) {
	f.Add([]byte(ccZooJSON))
	f.Add([]byte(`{"verify_mr_enclave":"off","verify_mr_signer":"on","verify_isv_prod_id":"off","verify_isv_svn":"off","sgx_mrs":[{"mr_signer":"` + hx(2, 32) + `"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseCCZoo(data)
		if err != nil {
			if r != nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error form: %q", err)
			}
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("ParseCCZoo returned an invalid role: %v", err)
		}
		if r.AllowDebug || r.AllowSimulation || r.TCBStatuses != nil || len(r.AdvisoryIDs) != 0 {
			t.Fatalf("CCZoo role loosened defaults: %+v", r)
		}
		p := &Policy{Roles: map[string]*Role{"r": r}}
		if d := p.Evaluate("r", &attest.Claims{TEE: attest.SGX, TCBStatus: attest.UpToDate}); d.Accepted {
			t.Fatal("identity-less claims accepted")
		}
	})
}

func TestYAMLErrorWithoutFileName(t *testing.T) {
	_, err := Parse([]byte("roles:\n  r:\n    allow_debug: 1\n"), "")
	if err == nil || err.Error() != `policy:3: roles.r.allow_debug: must be true or false, got "1"` {
		t.Fatalf("got %v", err)
	}
	if _, err := Load("/nonexistent/policy.yaml"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load: %v", err)
	}
}

// TestSNPCommittedTCBBelowCurrent: SNP claims whose COMMITTED_TCB differs
// from CURRENT_TCB are refused by default, naming both, and accepted with a
// warning under snp_allow_committed_tcb_below_current; equal TCBs and other
// TEEs are not affected.
func TestSNPCommittedTCBBelowCurrent(t *testing.T) {
	snp := func(committed uint64) *attest.Claims {
		return &attest.Claims{TEE: attest.SNP, Measurement: bytes.Clone(snpMeas), HostData: bytes.Clone(hostData),
			TCBStatus: attest.UpToDate, SNPCurrentTCB: 0x4405000000000002, SNPCommittedTCB: committed}
	}
	p := mustParse(t, testYAML)
	if d := p.Evaluate("aggregator", snp(0x4405000000000002), quiet()); !d.Accepted || len(d.Warnings) != 0 {
		t.Fatalf("committed = current: %+v", d)
	}
	d := p.Evaluate("aggregator", snp(0x4305000000000002), quiet())
	want := "COMMITTED_TCB 0x4305000000000002 below CURRENT_TCB 0x4405000000000002 (update not committed, rollback possible) refused (snp_allow_committed_tcb_below_current: false)"
	if d.Accepted || len(d.Reasons) != 1 || d.Reasons[0] != want {
		t.Fatalf("default: %+v", d)
	}
	y := strings.Replace(testYAML, "    allow_simulation: false\n", "    allow_simulation: false\n    snp_allow_committed_tcb_below_current: true\n", 1)
	p = mustParse(t, y)
	if !p.Roles["aggregator"].SNPAllowCommittedTCBBelowCurrent || p.Roles["collaborator"].SNPAllowCommittedTCBBelowCurrent {
		t.Fatal("knob not parsed into its role only")
	}
	d = p.Evaluate("aggregator", snp(0x4305000000000002), quiet())
	if !d.Accepted || len(d.Warnings) != 1 || !strings.HasPrefix(d.Warnings[0], "COMMITTED_TCB 0x4305000000000002 below CURRENT_TCB 0x4405000000000002") {
		t.Fatalf("allowed: %+v", d)
	}
	// The knob still needs the identity to match.
	c := snp(0x4305000000000002)
	c.Measurement[0] ^= 1
	if d := p.Evaluate("aggregator", c, quiet()); d.Accepted {
		t.Fatal("wrong measurement accepted with the knob")
	}
	if _, err := Parse([]byte(strings.Replace(y, "below_current: true", "below_current: yes please", 1)), "test.yaml"); err == nil ||
		!strings.Contains(err.Error(), "roles.aggregator.snp_allow_committed_tcb_below_current") {
		t.Fatalf("non-boolean knob: %v", err)
	}
}
