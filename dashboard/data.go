package dashboard

import (
	"context"
	"time"
)

// The dashboard renders what read-only data sources return. Each source is
// optional; a page whose source is missing says so. Sources are called on
// every page load (and on every live update), so they read fresh state;
// they must not write anything.

// FederationSource lists the federation's members (the workspace's PKI
// files, or the running party's live federation).
type FederationSource interface {
	Federation(ctx context.Context) (*Federation, error)
}

// AttestationSource lists what is known of each peer's attestation.
type AttestationSource interface {
	Attestations(ctx context.Context) ([]Attestation, error)
}

// FLSource lists horizontal-FL runs (fl/metrics' metrics.jsonl).
type FLSource interface {
	FLRuns(ctx context.Context) ([]FLRun, error)
}

// BrokerSource describes a key broker: keys, release policies and the audit
// log with its chain verification.
type BrokerSource interface {
	Broker(ctx context.Context) (*Broker, error)
}

// ServiceSource reports request counts of request/response services
// (inference serving, SQL analytics).
type ServiceSource interface {
	Services(ctx context.Context) ([]ServiceStats, error)
}

// Federation is the member list of one federation.
type Federation struct {
	Name string
	// CRLNextUpdate is when the federation's CRL expires (zero: unknown).
	CRLNextUpdate time.Time
	Members       []Member
}

// Member is one identity certificate the federation CA issued.
type Member struct {
	Name, Role, Serial string
	Status             string // active or revoked
	CertifiedAt        time.Time
	NotAfter           time.Time
	RevokedAt          time.Time // zero unless revoked
	RevocationReason   string
	// What the CA saw when it certified the member.
	Platform    string
	Measurement string
	TCBStatus   string
	Debug       bool
	Simulated   bool
	Policy      string
}

// Attestation is one peer's attestation as far as it is known: the
// evidence certified with its identity and the verdicts of the handshakes
// the service verified.
type Attestation struct {
	Peer, Role  string
	Platform    string
	Measurement string
	TCBStatus   string
	// Advisories and CachedUntil are empty when the source does not
	// record them (the page says so rather than "none").
	Advisories []string
	Debug      bool
	Simulated  bool
	// LastVerified is the last handshake verdict's time (zero: none seen),
	// LastResult accepted or refused, LastReason a refusal's reason.
	LastVerified      time.Time
	LastResult        string
	LastReason        string
	CachedUntil       time.Time // zero: not cached or unknown
	Accepted, Refused int
}

// FLRun is one horizontal-FL run (one metrics file).
type FLRun struct {
	Name string // the run directory
	// Rounds are the closed rounds, in order.
	Rounds []Round
	// Phases are per-participant phase times over the whole run.
	Phases     []PhaseTime
	Rejections []Rejection
	Events     []RunEvent
	// Warnings are lines of the metrics file the reader skipped.
	Warnings []string
}

// Round is one closed round.
type Round struct {
	Round        int
	Time         time.Time
	Seconds      float64
	Participants []string
	Accepted     []string
	Rejected     []string
	// Stragglers are participants that sent no update the round used
	// (neither accepted nor rejected).
	Stragglers []string
	// Metrics: val_<m> and local_val_<m> (collaborators' validation),
	// test_<m> (the aggregator's evaluation), dp_* (privacy accounting).
	Metrics map[string]float64
}

// PhaseTime sums one participant's time in one phase.
type PhaseTime struct {
	Participant, Phase string
	Count              int
	Seconds            float64 // total
	Max                float64
}

// Mean is the mean seconds per occurrence.
func (p PhaseTime) Mean() float64 {
	if p.Count == 0 {
		return 0
	}
	return p.Seconds / float64(p.Count)
}

// Rejection is an update the protocol refused or the strategy rejected.
type Rejection struct {
	Round       int
	Time        time.Time
	Participant string
	Kind        string // refused (protocol) or rejected (strategy)
	Reason      string
	Message     string
}

// RunEvent is a resume or a stop of a run.
type RunEvent struct {
	Round  int
	Time   time.Time
	Kind   string // resume or stopped
	Reason string
}

// Broker is a key broker's state.
type Broker struct {
	Name    string
	Keys    []Key
	Entries []AuditEntry // the audit log, oldest first
	Chain   ChainStatus
}

// Key is one primary key's metadata and release policy.
type Key struct {
	ID, State, Description string
	Version                uint32
	Policy                 string // release policy YAML
	Created, Updated       time.Time
}

// AuditEntry is one decision of the audit log.
type AuditEntry struct {
	Seq        uint64
	Time       time.Time
	Op         string
	Decision   string // granted or refused
	KeyID      string
	KeyVersion uint32
	Caller     string
	Role       string
	Platform   string
	Simulated  bool
	Reason     string
}

// ChainStatus is the outcome of verifying the audit chain.
type ChainStatus struct {
	Verified bool
	// Detail is the verification's one line: what was checked, or why it
	// failed.
	Detail           string
	Head             string // seq:hash
	Granted, Refused int
	MACChecked       bool
}

// ServiceStats are one service's request counts since Since.
type ServiceStats struct {
	Service  string // e.g. "inference" or "sql"
	Endpoint string
	Since    time.Time
	Requests int64
	Refused  int64
	Errors   int64
	// LatencySeconds is the mean latency of served requests.
	LatencySeconds float64
}

// VFLSource lists vertical-FL sessions (one per party state directory).
type VFLSource interface {
	VFLSessions(ctx context.Context) ([]VFLSession, error)
}

// VFLSession is one side (leader or follower) of a vertical-FL run.
type VFLSession struct {
	Name string // the run (plan hash prefix)
	Role string
	// PSI is the private set intersection that aligned the rows (nil: not
	// run yet).
	PSI *PSISession
	// Checkpoints are the checkpoints this side holds, oldest first.
	Checkpoints []Checkpoint
	// Model is the exported half's model card (nil: not exported yet).
	Model *VFLModel
}

// PSISession is one side's PSI record.
type PSISession struct {
	SessionID, Mode, Self, Peer string
	Distinct, Duplicates        int
	PeerDistinct, Intersection  int
	Learned, Simulated          bool
}

// Checkpoint is one training checkpoint.
type Checkpoint struct {
	Iteration int64
	Time      time.Time
	Bytes     int64
}

// VFLModel is what an exported half's model card says.
type VFLModel struct {
	Plan                       string
	Iterations, AppliedUpdates int64
	Resumes                    int
	TrainRows, TestRows        int
	Metrics                    map[string]float64
	Simulated                  bool
	Created                    time.Time
}
