package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/teeml/teeml/attest/policy"
	partypkg "github.com/teeml/teeml/party"
	"github.com/teeml/teeml/vfl/psi"
)

// PSIOptions configure RunPSI, a standalone PSI session (`teeml vfl psi`).
type PSIOptions struct {
	Workspace string   // trust material: pki/, party/NAME.yaml
	Name      string   // this party's member name
	Role      psi.Role // this party's role
	Mode      psi.Mode
	IDs       string // ID file, one ID per line
	Out       string // aligned ID file to write
	Session   string // session record to write; default Out + ".session.json"
	// Exactly one of Peer (dial HOST:PORT) and Listen (listen on ADDR).
	Peer, Listen string
	// Policy is the attestation policy file (roles leader and follower),
	// relative to Workspace unless absolute.
	Policy string
	// ConfigHash is bound into the session; default the policy file's
	// SHA-256 (hex).
	ConfigHash     string
	TempDir        string // spill files; "" = $TMPDIR
	BatchSize      int    // IDs per message
	MemoryBudget   int    // bytes of IDs sorted in memory before spilling
	MessageTimeout time.Duration
	ConnectTimeout time.Duration
	// Stdout gets the progress lines (IDs read, listening address,
	// simulation notice); nil discards them.
	Stdout io.Writer
	Logger *slog.Logger // nil: slog.Default(); "party" NAME is added
}

// PSIRun is a finished RunPSI session.
type PSIRun struct {
	*psi.Result
	PeerRole string // the other party's role
	Session  string // the session record written
}

// RunPSI runs one PSI session with the other party over RA-TLS: it loads
// the policy and the party's trust material from the workspace, reads and
// deduplicates the ID file (refusing a bad one before connecting), runs
// the protocol as listener or dialer, and writes the aligned IDs and the
// session record.
func RunPSI(ctx context.Context, o PSIOptions) (*PSIRun, error) {
	if (o.Peer == "") == (o.Listen == "") {
		return nil, errors.New("vfl psi: give exactly one of a peer to dial and an address to listen on")
	}
	if o.Session == "" {
		o.Session = o.Out + ".session.json"
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("party", o.Name)
	peerRole := "follower"
	if o.Role == psi.Follower {
		peerRole = "leader"
	}
	pol, err := loadPSIPolicy(&o, peerRole)
	if err != nil {
		return nil, err
	}
	pt, err := partypkg.Load(partypkg.WorkspaceFiles(o.Workspace, o.Name), o.Name, o.Role.String(), log)
	if err != nil {
		return nil, err
	}
	pt.Announce(o.Stdout, log)
	// The ID file is read (and refused, if bad) before any connection.
	set, err := psi.PrepareFile(o.IDs, psi.PrepareOptions{TempDir: o.TempDir, MemoryBudget: o.MemoryBudget, Logger: log})
	if err != nil {
		return nil, err
	}
	defer set.Close()
	fmt.Fprintf(o.Stdout, "vfl psi: %s %s, mode %s: %d IDs read, %d distinct, %d duplicates dropped\n",
		o.Role, o.Name, o.Mode, set.Read, set.N, set.Duplicates)
	creds, stop, err := pt.Credentials(ctx, partypkg.Peer{Role: peerRole, Policy: pol}, o.Listen != "", log)
	if err != nil {
		return nil, err
	}
	defer stop()
	cfg := psi.Config{Role: o.Role, Mode: o.Mode, ConfigHash: o.ConfigHash, Self: o.Name, BatchSize: o.BatchSize,
		MessageTimeout: o.MessageTimeout, ConnectTimeout: o.ConnectTimeout, TempDir: o.TempDir, MemoryBudget: o.MemoryBudget, Logger: log}
	var res *psi.Result
	if o.Listen != "" {
		lis, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return nil, fmt.Errorf("vfl psi: listen %s: %w", o.Listen, err)
		}
		fmt.Fprintf(o.Stdout, "vfl psi: listening on %s for the %s\n", lis.Addr(), peerRole)
		if res, err = psi.Serve(ctx, lis, creds, cfg, set, o.Out); err != nil {
			return nil, err
		}
	} else if res, err = psi.Dial(ctx, o.Peer, creds, cfg, set, o.Out); err != nil {
		return nil, err
	}
	if err := psi.NewSessionFile(res, cfg, set, pt.Simulated()).Write(o.Session); err != nil {
		return nil, fmt.Errorf("vfl psi: session record: %w", err)
	}
	return &PSIRun{Result: res, PeerRole: peerRole, Session: o.Session}, nil
}

// loadPSIPolicy reads o.Policy (resolving it against the workspace), which
// must have an entry for the peer's role, and defaults o.ConfigHash to its
// SHA-256.
func loadPSIPolicy(o *PSIOptions, peerRole string) (*policy.Policy, error) {
	if !filepath.IsAbs(o.Policy) {
		o.Policy = filepath.Join(o.Workspace, filepath.FromSlash(o.Policy))
	}
	polBytes, err := os.ReadFile(o.Policy)
	if err != nil {
		return nil, fmt.Errorf("vfl psi: policy: %w", err)
	}
	pol, err := policy.Parse(polBytes, o.Policy)
	if err != nil {
		return nil, err
	}
	if _, ok := pol.Roles[peerRole]; !ok {
		return nil, fmt.Errorf("vfl psi: policy %s has no roles.%s entry for the peer", o.Policy, peerRole)
	}
	if o.ConfigHash == "" {
		h := sha256.Sum256(polBytes)
		o.ConfigHash = hex.EncodeToString(h[:])
	}
	return pol, nil
}
