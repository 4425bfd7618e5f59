// Package policy decides whether verified attestation claims are acceptable
// for a role (aggregator, collaborator, …). It is the "validate" step after
// a platform Verifier has produced attest.Claims: it never looks at raw
// evidence, only at claims.
//
// A Policy maps role names to a Role: lists of accepted identities per TEE
// kind (SGX enclaves, TDX trust domains, SEV-SNP guests) plus what else the
// role tolerates (debug, TCB statuses, advisories, simulation). Everything
// not explicitly allowed is refused: the zero Policy refuses every claim, a
// role refuses debug enclaves, simulated evidence, any TCB status but
// UpToDate and any security advisory unless it says otherwise.
//
// Evaluate returns a Decision that explains itself: when refused, Reasons
// lists every failed check and Err gives them as one line, e.g.
//
//	policy: peer "bank-b" role collaborator: mr_enclave 3f2a… not in accepted list [9c1d…]; debug enclave refused (allow_debug: false)
//
// Policies are written in YAML (see Parse) or converted from CCZoo's
// dynamic_config.json (see ParseCCZoo).
package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/teeml/teeml/attest"
)

// Policy maps role names to what each role accepts.
type Policy struct {
	Roles map[string]*Role
}

// Role is what evidence of a peer in one role must show to be accepted.
type Role struct {
	// Accepted identities per TEE kind. Claims must match at least one
	// entry of their TEE's list; an empty list refuses that TEE.
	SGX []SGXEntry
	TDX []TDXEntry
	SNP []SNPEntry

	// AllowDebug accepts claims whose Debug flag is set (SGX DEBUG
	// attribute, TDX DEBUG TD attribute, SNP policy DEBUG bit).
	AllowDebug bool
	// TCBStatuses lists accepted TCB statuses; nil means UpToDate only.
	TCBStatuses []attest.TCBStatus
	// AdvisoryIDs lists accepted security advisories (INTEL-SA-00289…); any
	// advisory in the claims that is not listed refuses them.
	AdvisoryIDs []string
	// AllowSimulation accepts simulated evidence (attest/sim). Simulated
	// claims must still match an identity entry; their TCB status Unknown is
	// accepted since no TCB applies.
	AllowSimulation bool
	// SNPAllowCommittedTCBBelowCurrent accepts SEV-SNP claims whose
	// COMMITTED_TCB differs from (is below) CURRENT_TCB: a firmware or
	// microcode update is running but not committed, so the host can still
	// roll back to the committed TCB. Refused by default.
	SNPAllowCommittedTCBBelowCurrent bool
}

// SGXEntry is one accepted SGX enclave identity. Nil fields are not
// checked, but at least one of MREnclave and MRSigner must be set.
type SGXEntry struct {
	MREnclave []byte  // 32 bytes
	MRSigner  []byte  // 32 bytes
	ISVProdID *uint16 // exact
	ISVSVN    *uint16 // exact (CCZoo semantics); exclusive with MinISVSVN
	MinISVSVN *uint16 // minimum
}

// TDXEntry is one accepted TDX trust domain identity. Nil fields are not
// checked, but at least one of MRTD and RTMR[0..3] must be set.
type TDXEntry struct {
	MRTD         []byte    // 48 bytes
	RTMR         [4][]byte // 48 bytes each
	MRConfigID   []byte    // 48 bytes
	MROwner      []byte    // 48 bytes
	TDAttributes []byte    // 8 bytes, exact
	XFAM         []byte    // 8 bytes, exact
	// MRServiceTD is the TDX 1.5 MRSERVICETD (48 bytes, exact; all zero:
	// no service TD bound). A TDX 1.0 report, which has none, is refused.
	MRServiceTD []byte
}

// SNPEntry is one accepted SEV-SNP guest identity. Measurement is required:
// HOST_DATA is chosen by the host and does not identify guest code.
type SNPEntry struct {
	Measurement []byte // 48 bytes
	HostData    []byte // 32 bytes
}

// DefaultTCBStatuses is what a role accepts when TCBStatuses is nil.
var DefaultTCBStatuses = []attest.TCBStatus{attest.UpToDate}

// acceptableStatuses are the statuses a policy may list. Revoked and
// Unknown can never be accepted (simulated Unknown goes through
// allow_simulation).
var acceptableStatuses = []attest.TCBStatus{
	attest.UpToDate,
	attest.SWHardeningNeeded,
	attest.ConfigurationNeeded,
	attest.ConfigurationAndSWHardeningNeeded,
	attest.OutOfDate,
	attest.OutOfDateConfigurationNeeded,
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Accepted bool
	Peer     string // from the Peer option, for messages
	Role     string
	TEE      attest.TEE
	// Simulated is true when the claims came from simulated evidence,
	// accepted or not.
	Simulated bool
	// MatchedEntry is the index of the matching entry in the role's list for
	// TEE, or -1.
	MatchedEntry int
	// Reasons lists every failed check; empty when Accepted.
	Reasons []string
	// Warnings lists what was accepted only because the role allows it
	// (simulation, debug, a non-UpToDate TCB status, advisories). They are
	// logged at WARN level.
	Warnings []string
}

func (d *Decision) subject() string {
	var b strings.Builder
	b.WriteString("policy: ")
	if d.Peer != "" {
		fmt.Fprintf(&b, "peer %q ", d.Peer)
	}
	fmt.Fprintf(&b, "role %s", d.Role)
	return b.String()
}

// String is a one-line account of the decision.
func (d Decision) String() string {
	if d.Accepted {
		s := d.subject() + fmt.Sprintf(": accepted (%s entry %d)", d.TEE, d.MatchedEntry)
		if len(d.Warnings) > 0 {
			s += "; " + strings.Join(d.Warnings, "; ")
		}
		return s
	}
	reasons := d.Reasons
	if len(reasons) == 0 {
		reasons = []string{"refused"}
	}
	return d.subject() + ": " + strings.Join(reasons, "; ")
}

// RefusedError is the error form of a refusing Decision.
type RefusedError struct{ Decision Decision }

func (e *RefusedError) Error() string { return e.Decision.String() }

// Err returns nil when the decision accepts, else a one-line *RefusedError
// naming the peer, the role and every reason.
func (d Decision) Err() error {
	if d.Accepted {
		return nil
	}
	return &RefusedError{Decision: d}
}

// Option adjusts one evaluation.
type Option func(*evalOptions)

type evalOptions struct {
	peer             string
	reportData       []byte
	reportDataSet    bool
	reportDataPrefix []byte
	prefixSet        bool
	now              time.Time
	logger           *slog.Logger
	ctx              context.Context
}

// Context stops a long evaluation (a policy with very many entries) when
// ctx ends: the decision is then a refusal saying so. The default never
// stops.
func Context(ctx context.Context) Option { return func(o *evalOptions) { o.ctx = ctx } }

// Peer names the peer in messages.
func Peer(name string) Option { return func(o *evalOptions) { o.peer = name } }

// ReportData requires Claims.ReportData to equal b zero-padded to 64 bytes
// (as issuers pad it). An empty b (a binding to nothing, most likely a
// missing nonce) or one longer than 64 bytes refuses everything.
func ReportData(b []byte) Option {
	return func(o *evalOptions) { o.reportData, o.reportDataSet = bytes.Clone(b), true }
}

// ReportDataPrefix requires Claims.ReportData to start with p. An empty p
// refuses everything.
func ReportDataPrefix(p []byte) Option {
	return func(o *evalOptions) { o.reportDataPrefix, o.prefixSet = bytes.Clone(p), true }
}

// At refuses claims whose ValidUntil (when set) is before now.
func At(now time.Time) Option { return func(o *evalOptions) { o.now = now } }

// Logger sets where accepted-with-warnings decisions are logged; the default
// is slog.Default().
func Logger(l *slog.Logger) Option { return func(o *evalOptions) { o.logger = l } }

func debugWhat(t attest.TEE) string {
	switch t {
	case attest.TDX:
		return "debug trust domain"
	case attest.SNP:
		return "debug guest"
	}
	return "debug enclave"
}

// Evaluate decides whether claims c are acceptable for role. It runs every
// check and reports all failures; unknown roles, nil claims and nil policies
// are refused.
func (p *Policy) Evaluate(role string, c *attest.Claims, opts ...Option) Decision {
	var o evalOptions
	for _, f := range opts {
		f(&o)
	}
	if o.ctx == nil {
		o.ctx = context.Background()
	}
	ev := &evaluation{d: Decision{Peer: o.peer, Role: role, MatchedEntry: -1}, o: &o, c: c}
	if c == nil {
		ev.refuse("no claims")
		return ev.d
	}
	ev.d.TEE, ev.d.Simulated = c.TEE, c.Simulated
	if p != nil {
		ev.r = p.Roles[role]
	}
	if ev.r == nil {
		ev.refuse("role %q not in policy", role)
		return ev.d
	}
	ev.simulationAndDebug()
	ev.tcb()
	ev.snpCommittedTCB()
	ev.advisories()
	ev.reportData()
	// Freshness of the collateral behind the claims.
	if !o.now.IsZero() && !c.ValidUntil.IsZero() && o.now.After(c.ValidUntil) {
		ev.refuse("claims expired at %s", c.ValidUntil.UTC().Format(time.RFC3339))
	}
	ev.identity()

	d := ev.d
	d.Accepted = len(d.Reasons) == 0
	if d.Accepted && len(d.Warnings) > 0 {
		l := o.logger
		if l == nil {
			l = slog.Default()
		}
		l.Warn(d.String(), "peer", d.Peer, "role", d.Role, "simulated", d.Simulated)
	}
	return d
}

// evaluation is one Evaluate in progress: the checks add to d's reasons
// (refusals) and warnings (accepted only because the role allows it).
type evaluation struct {
	d Decision
	o *evalOptions
	c *attest.Claims
	r *Role
}

func (ev *evaluation) refuse(format string, args ...any) {
	ev.d.Reasons = append(ev.d.Reasons, fmt.Sprintf(format, args...))
}

func (ev *evaluation) warn(format string, args ...any) {
	ev.d.Warnings = append(ev.d.Warnings, fmt.Sprintf(format, args...))
}

func (ev *evaluation) simulationAndDebug() {
	c, r := ev.c, ev.r
	if c.Simulated {
		if r.AllowSimulation {
			ev.warn("SIMULATED evidence accepted (allow_simulation: true): no hardware protection")
		} else {
			ev.refuse("simulated evidence refused (allow_simulation: false)")
		}
	}
	if c.Debug {
		if r.AllowDebug {
			ev.warn("%s accepted (allow_debug: true)", debugWhat(c.TEE))
		} else {
			ev.refuse("%s refused (allow_debug: false)", debugWhat(c.TEE))
		}
	}
}

func (ev *evaluation) tcb() {
	c := ev.c
	accepted := ev.r.TCBStatuses
	if accepted == nil {
		accepted = DefaultTCBStatuses
	}
	switch {
	case c.Simulated && c.TCBStatus == attest.TCBUnknown:
		// No TCB applies; simulation itself was judged above.
	case c.TCBStatus == "":
		ev.refuse("TCB status missing")
	case !slices.Contains(accepted, c.TCBStatus) || !slices.Contains(acceptableStatuses, c.TCBStatus):
		ev.refuse("TCB status %s not accepted (accepted: %s)", c.TCBStatus, joinStatuses(accepted))
	case c.TCBStatus != attest.UpToDate:
		ev.warn("TCB status %s accepted", c.TCBStatus)
	}
}

// snpCommittedTCB judges an SEV-SNP report whose COMMITTED_TCB is not its
// CURRENT_TCB (attest/snp refuses COMMITTED_TCB above CURRENT_TCB).
func (ev *evaluation) snpCommittedTCB() {
	c := ev.c
	if c.TEE != attest.SNP || c.Simulated || c.SNPCommittedTCB == c.SNPCurrentTCB {
		return
	}
	what := fmt.Sprintf("COMMITTED_TCB 0x%016x below CURRENT_TCB 0x%016x (update not committed, rollback possible)", c.SNPCommittedTCB, c.SNPCurrentTCB)
	if ev.r.SNPAllowCommittedTCBBelowCurrent {
		ev.warn("%s accepted (snp_allow_committed_tcb_below_current: true)", what)
	} else {
		ev.refuse("%s refused (snp_allow_committed_tcb_below_current: false)", what)
	}
}

func (ev *evaluation) advisories() {
	if len(ev.c.AdvisoryIDs) == 0 {
		return
	}
	accepted := make(map[string]bool, len(ev.r.AdvisoryIDs))
	for _, a := range ev.r.AdvisoryIDs {
		accepted[a] = true
	}
	for _, a := range ev.c.AdvisoryIDs {
		if accepted[a] {
			ev.warn("advisory %s accepted", a)
		} else {
			ev.refuse("advisory %s not accepted", a)
		}
	}
}

// reportData checks the report data binding (ReportData, ReportDataPrefix).
func (ev *evaluation) reportData() {
	o, c := ev.o, ev.c
	if o.reportDataSet {
		if len(o.reportData) == 0 {
			ev.refuse("expected report data is empty")
		} else if len(o.reportData) > 64 {
			ev.refuse("expected report data is %d bytes, at most 64", len(o.reportData))
		} else {
			want := make([]byte, 64)
			copy(want, o.reportData)
			if !bytes.Equal(c.ReportData, want) {
				ev.refuse("report data %s does not match expected %s", hexOrNone(c.ReportData), attest.Hex(want))
			}
		}
	}
	if o.prefixSet {
		if len(o.reportDataPrefix) == 0 {
			ev.refuse("expected report data prefix is empty")
		} else if !bytes.HasPrefix(c.ReportData, o.reportDataPrefix) {
			ev.refuse("report data %s does not start with expected %s", hexOrNone(c.ReportData), attest.Hex(o.reportDataPrefix))
		}
	}
}

// identity matches the claims against the role's entries for their TEE.
func (ev *evaluation) identity() {
	c, r := ev.c, ev.r
	var entries [][]check
	switch c.TEE {
	case attest.SGX:
		entries = make([][]check, len(r.SGX))
		for i := range r.SGX {
			entries[i] = r.SGX[i].checks(c)
		}
	case attest.TDX:
		entries = make([][]check, len(r.TDX))
		for i := range r.TDX {
			entries[i] = r.TDX[i].checks(c)
		}
	case attest.SNP:
		entries = make([][]check, len(r.SNP))
		for i := range r.SNP {
			entries[i] = r.SNP[i].checks(c)
		}
	default:
		ev.refuse("unknown TEE %q", c.TEE)
		return
	}
	if len(entries) == 0 {
		ev.refuse("no %s identities accepted for this role", teeKey(c.TEE))
	} else if m, why := matchEntries(ev.o.ctx, teeKey(c.TEE), entries); m >= 0 {
		ev.d.MatchedEntry = m
	} else {
		ev.d.Reasons = append(ev.d.Reasons, why...)
	}
}

func joinStatuses(s []attest.TCBStatus) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ", ")
}

func hexOrNone(b []byte) string {
	if len(b) == 0 {
		return "(none)"
	}
	return attest.Hex(b)
}

// teeKey is the YAML key of a TEE's entry list.
func teeKey(t attest.TEE) string {
	if t == attest.SNP {
		return "snp"
	}
	return string(t)
}

// check is one constraint of an entry applied to claims. Its values are
// rendered only when a refusal needs them (wantStr, gotStr, message): a
// policy with many entries is decided without formatting each one.
type check struct {
	field    string // YAML key
	identity bool   // an identity field (mr_enclave, mrtd, measurement…)
	exact    bool   // equality constraint
	pass     bool
	num      bool   // a number check (wantN, gotN), else bytes (wantB, gotB)
	min      bool   // minimum (gotN ≥ wantN) rather than equality
	wantB    []byte // accepted bytes
	gotB     []byte // claimed bytes
	wantN    uint16
	gotN     uint16
}

// wantStr renders the accepted value.
func (ch *check) wantStr() string {
	if ch.num {
		return fmt.Sprint(ch.wantN)
	}
	return attest.Hex(ch.wantB)
}

// gotStr renders the claimed value.
func (ch *check) gotStr() string {
	if ch.num {
		return fmt.Sprint(ch.gotN)
	}
	return hexOrNone(ch.gotB)
}

// message is the mismatch message of a failed check.
func (ch *check) message() string {
	if ch.min {
		return fmt.Sprintf("isv_svn %d below min_isv_svn %d", ch.gotN, ch.wantN)
	}
	return fmt.Sprintf("%s %s, want %s", ch.field, ch.gotStr(), ch.wantStr())
}

func bytesCheck(field string, identity bool, want, got []byte) check {
	return check{field: field, identity: identity, exact: true, wantB: want, gotB: got, pass: bytes.Equal(want, got)}
}

func u16Check(field string, want *uint16, got uint16) check {
	return check{field: field, exact: true, num: true, wantN: *want, gotN: got, pass: *want == got}
}

func (e *SGXEntry) checks(c *attest.Claims) []check {
	var cs []check
	if e.MREnclave != nil {
		cs = append(cs, bytesCheck("mr_enclave", true, e.MREnclave, c.MREnclave))
	}
	if e.MRSigner != nil {
		cs = append(cs, bytesCheck("mr_signer", true, e.MRSigner, c.MRSigner))
	}
	if e.ISVProdID != nil {
		cs = append(cs, u16Check("isv_prod_id", e.ISVProdID, c.ISVProdID))
	}
	if e.ISVSVN != nil {
		cs = append(cs, u16Check("isv_svn", e.ISVSVN, c.ISVSVN))
	}
	if e.MinISVSVN != nil {
		cs = append(cs, check{field: "min_isv_svn", num: true, min: true, wantN: *e.MinISVSVN, gotN: c.ISVSVN, pass: c.ISVSVN >= *e.MinISVSVN})
	}
	return cs
}

func (e *TDXEntry) checks(c *attest.Claims) []check {
	var cs []check
	if e.MRTD != nil {
		cs = append(cs, bytesCheck("mrtd", true, e.MRTD, c.MRTD))
	}
	for i := range e.RTMR {
		if e.RTMR[i] != nil {
			cs = append(cs, bytesCheck(fmt.Sprintf("rtmr%d", i), true, e.RTMR[i], c.RTMR[i]))
		}
	}
	if e.MRConfigID != nil {
		cs = append(cs, bytesCheck("mr_config_id", false, e.MRConfigID, c.MRConfigID))
	}
	if e.MROwner != nil {
		cs = append(cs, bytesCheck("mr_owner", false, e.MROwner, c.MROwner))
	}
	if e.TDAttributes != nil {
		cs = append(cs, bytesCheck("td_attributes", false, e.TDAttributes, c.TDAttributes))
	}
	if e.XFAM != nil {
		cs = append(cs, bytesCheck("xfam", false, e.XFAM, c.XFAM))
	}
	if e.MRServiceTD != nil {
		cs = append(cs, bytesCheck("mr_service_td", false, e.MRServiceTD, c.MRServiceTD))
	}
	return cs
}

func (e *SNPEntry) checks(c *attest.Claims) []check {
	var cs []check
	if e.Measurement != nil {
		cs = append(cs, bytesCheck("measurement", true, e.Measurement, c.Measurement))
	}
	if e.HostData != nil {
		cs = append(cs, bytesCheck("host_data", false, e.HostData, c.HostData))
	}
	return cs
}

// maxListed bounds how many accepted values and failing entries a refusal
// spells out; the rest are counted ("… and 199990 more"), so a refusal
// stays one readable line whatever the policy's size.
const maxListed = 16

// cancelEvery is how many entries matchEntries checks between looks at the
// evaluation's context.
const cancelEvery = 1024

// matchEntries returns the first entry all of whose checks pass (and which
// has an identity check), or -1 and the reasons none did. It is linear in
// the number of checks (accepted values are collected in a set), and stops
// with a reason when ctx ends.
func matchEntries(ctx context.Context, kind string, entries [][]check) (int, []string) {
	stopped := func(i int) bool { return i%cancelEvery == cancelEvery-1 && ctx.Err() != nil }
	for i, cs := range entries {
		if stopped(i) {
			return -1, []string{fmt.Sprintf("evaluation stopped after %d of %d %s entries: %v", i+1, len(entries), kind, ctx.Err())}
		}
		ok, hasID := true, false
		for _, ch := range cs {
			ok = ok && ch.pass
			hasID = hasID || ch.identity
		}
		if ok && hasID {
			return i, nil
		}
	}
	// Fields constrained exactly by every entry and matched by none: the
	// claimed value is simply not in the accepted list.
	var reasons []string
	fields := []string{}
	for _, ch := range entries[0] {
		if ch.exact {
			fields = append(fields, ch.field)
		}
	}
	for _, f := range fields {
		var accepted []string
		seen := map[string]bool{}
		distinct := 0
		everywhere, matched := true, false
		var gotCh *check
		for i, cs := range entries {
			if stopped(i) {
				return -1, []string{fmt.Sprintf("evaluation stopped after %d of %d %s entries: %v", i+1, len(entries), kind, ctx.Err())}
			}
			found := false
			for j := range cs {
				ch := &cs[j]
				if ch.field == f && ch.exact {
					found = true
					gotCh = ch
					matched = matched || ch.pass
					key := string(ch.wantB)
					if ch.num { // a field is either numeric or bytes
						key = string([]byte{byte(ch.wantN >> 8), byte(ch.wantN)})
					}
					if !seen[key] {
						seen[key] = true
						if len(accepted) < maxListed {
							accepted = append(accepted, ch.wantStr())
						}
						distinct++
					}
				}
			}
			everywhere = everywhere && found
		}
		if everywhere && !matched {
			reasons = append(reasons, fmt.Sprintf("%s %s not in accepted list [%s]", f, gotCh.gotStr(), listed(accepted, distinct)))
		}
	}
	if len(reasons) > 0 {
		return -1, reasons
	}
	for i, cs := range entries {
		if i == maxListed {
			reasons = append(reasons, fmt.Sprintf("… and %d more %s entries", len(entries)-maxListed, kind))
			break
		}
		var why []string
		hasID := false
		for j := range cs {
			hasID = hasID || cs[j].identity
			if !cs[j].pass {
				why = append(why, cs[j].message())
			}
		}
		if !hasID {
			why = append(why, "entry has no identity field")
		}
		reasons = append(reasons, fmt.Sprintf("%s entry %d: %s", kind, i, strings.Join(why, ", ")))
	}
	return -1, reasons
}

// listed joins the first (at most maxListed) of n values and counts the
// rest.
func listed(first []string, n int) string {
	if n <= len(first) {
		return strings.Join(first, ", ")
	}
	return fmt.Sprintf("%s, … and %d more", strings.Join(first, ", "), n-len(first))
}

// Validate checks a policy built in code with the rules Parse applies to
// YAML: every role has entries, every entry an identity field of the right
// length, only acceptable TCB statuses.
func (p *Policy) Validate() error {
	if p == nil || len(p.Roles) == 0 {
		return errors.New("policy: no roles")
	}
	for _, name := range slices.Sorted(maps.Keys(p.Roles)) {
		r := p.Roles[name]
		if err := r.validate(); err != nil {
			return fmt.Errorf("policy: role %q: %w", name, err)
		}
	}
	return nil
}

func (r *Role) validate() error {
	if r == nil {
		return errors.New("nil role")
	}
	if len(r.SGX)+len(r.TDX)+len(r.SNP) == 0 {
		return errors.New("no sgx, tdx or snp entries: the role would refuse everything")
	}
	for i := range r.SGX {
		if err := r.SGX[i].validate(); err != nil {
			return fmt.Errorf("sgx entry %d: %w", i, err)
		}
	}
	for i := range r.TDX {
		if err := r.TDX[i].validate(); err != nil {
			return fmt.Errorf("tdx entry %d: %w", i, err)
		}
	}
	for i := range r.SNP {
		if err := r.SNP[i].validate(); err != nil {
			return fmt.Errorf("snp entry %d: %w", i, err)
		}
	}
	if err := validateStatuses(r.TCBStatuses); err != nil {
		return err
	}
	for _, a := range r.AdvisoryIDs {
		if err := validateAdvisory(a); err != nil {
			return err
		}
	}
	return nil
}

func validateStatuses(s []attest.TCBStatus) error {
	if s != nil && len(s) == 0 {
		return errors.New("tcb_statuses is empty: the role would refuse everything (omit it for UpToDate only)")
	}
	for _, v := range s {
		if err := validateStatus(v); err != nil {
			return err
		}
	}
	return nil
}

func validateStatus(v attest.TCBStatus) error {
	switch {
	case v == attest.Revoked:
		return errors.New("tcb_statuses: Revoked can never be accepted")
	case v == attest.TCBUnknown:
		return errors.New("tcb_statuses: Unknown is only for simulated evidence; use allow_simulation")
	case !slices.Contains(acceptableStatuses, v):
		return fmt.Errorf("tcb_statuses: unknown TCB status %q (known: %s)", v, joinStatuses(acceptableStatuses))
	}
	return nil
}

func validateAdvisory(a string) error {
	if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == ',' }) {
		return fmt.Errorf("advisory_ids: %q is not an advisory ID", a)
	}
	return nil
}

func checkLen(field string, b []byte, n int) error {
	if b != nil && len(b) != n {
		return fmt.Errorf("%s is %d bytes, want %d", field, len(b), n)
	}
	return nil
}

func (e *SGXEntry) validate() error {
	if e.MREnclave == nil && e.MRSigner == nil {
		return errors.New("needs mr_enclave or mr_signer")
	}
	if e.ISVSVN != nil && e.MinISVSVN != nil {
		return errors.New("set isv_svn (exact) or min_isv_svn, not both")
	}
	return firstErr(checkLen("mr_enclave", e.MREnclave, 32), checkLen("mr_signer", e.MRSigner, 32))
}

func (e *TDXEntry) validate() error {
	if e.MRTD == nil && e.RTMR[0] == nil && e.RTMR[1] == nil && e.RTMR[2] == nil && e.RTMR[3] == nil {
		return errors.New("needs mrtd or an rtmr")
	}
	errs := []error{checkLen("mrtd", e.MRTD, 48), checkLen("mr_config_id", e.MRConfigID, 48),
		checkLen("mr_owner", e.MROwner, 48), checkLen("td_attributes", e.TDAttributes, 8), checkLen("xfam", e.XFAM, 8),
		checkLen("mr_service_td", e.MRServiceTD, 48)}
	for i := range e.RTMR {
		errs = append(errs, checkLen(fmt.Sprintf("rtmr%d", i), e.RTMR[i], 48))
	}
	return firstErr(errs...)
}

func (e *SNPEntry) validate() error {
	if e.Measurement == nil {
		return errors.New("needs measurement (host_data alone does not identify the guest)")
	}
	return firstErr(checkLen("measurement", e.Measurement, 48), checkLen("host_data", e.HostData, 32))
}

// firstErr returns the first non-nil error, keeping messages one line.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
