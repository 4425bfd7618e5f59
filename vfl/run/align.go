package run

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/join"
	"github.com/teeml/teeml/vfl/psi"
)

// AlignMethod names the alignment in model cards and outputs.
const AlignMethod = "ecdh-psi ristretto255"

// Alignment is how a run's rows were aligned, as its model card records it.
type Alignment struct {
	Method       string `json:"method"`
	Mode         string `json:"mode"`
	SessionID    string `json:"psi_session_id"`
	OwnIDs       int    `json:"own_ids"`
	PeerIDs      int    `json:"peer_ids"`
	Intersection int    `json:"intersection"`
}

// aligned is the outcome of a PSI session as this party keeps it: the
// common IDs in the order both sides share, and the seed both sides draw
// the batch order from.
type aligned struct {
	rec  *psi.SessionFile
	id   []byte // the PSI session id
	seed [32]byte
	ids  []string
}

func (a *aligned) card() *Alignment {
	return &Alignment{Method: AlignMethod, Mode: a.rec.Mode, SessionID: a.rec.SessionID,
		OwnIDs: a.rec.Distinct, PeerIDs: a.rec.PeerDistinct, Intersection: a.rec.Intersection}
}

// psiTransport runs one PSI session with the peer over the party's
// channel: RA-TLS (the PSI service next to the bridge on the follower's
// listener) or an in-process pipe.
type psiTransport interface {
	runPSI(ctx context.Context, cfg psi.Config, set *psi.Set, out string) (*psi.Result, error)
}

// psiListener is the follower's side over RA-TLS: the PSI service on the
// bridge's gRPC server, so the leader passes the same attestation and plan
// policy checks for both.
type psiListener struct{ svc *psi.Service }

func (l psiListener) runPSI(ctx context.Context, cfg psi.Config, set *psi.Set, out string) (*psi.Result, error) {
	return l.svc.Accept(ctx, cfg, set, out)
}

// psiDialer is the leader's side over RA-TLS: a PSI stream on the bridge's
// client connection.
type psiDialer struct {
	cc   grpc.ClientConnInterface
	addr string
}

func (d psiDialer) runPSI(ctx context.Context, cfg psi.Config, set *psi.Set, out string) (*psi.Result, error) {
	return psi.DialConn(ctx, d.cc, d.addr, cfg, set, out)
}

// psiOf finds the PSI transport of a connector given in Options, looking
// through test wrappers that embed one.
func psiOf(c Connector) psiTransport {
	for c != nil {
		if p, ok := c.(psiTransport); ok {
			return p
		}
		u, ok := c.(interface{ unwrap() Connector })
		if !ok {
			return nil
		}
		c = u.unwrap()
	}
	return nil
}

// Files of the stored alignment, next to the checkpoints.
func (pt *party) psiDir() string         { return filepath.Join(pt.o.StateDir, "psi") }
func (pt *party) alignedPath() string    { return filepath.Join(pt.psiDir(), "aligned-ids.txt") }
func (pt *party) psiSessionPath() string { return filepath.Join(pt.psiDir(), "session.json") }

// loadAlignment reads the alignment stored by an earlier run of this plan
// at this side, or returns nil (with the reason logged) when there is none
// usable. The session record is written after the aligned IDs, so a
// record means both files are complete.
func (pt *party) loadAlignment() *aligned {
	if _, err := os.Stat(pt.psiSessionPath()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	a, err := pt.readAlignment(pt.psiSessionPath(), pt.alignedPath())
	if err != nil {
		pt.log.Warn("ignoring the stored alignment", "err", err)
		return nil
	}
	pt.log.Info("stored alignment", "psi_session", a.rec.SessionID[:16], "intersection", len(a.ids))
	return a
}

func (pt *party) readAlignment(sessionPath, idsPath string) (*aligned, error) {
	rec, err := psi.ReadSessionFile(sessionPath)
	if err != nil {
		return nil, err
	}
	switch {
	case rec.ConfigHash != pt.plan.Hash():
		return nil, fmt.Errorf("psi session %s is for plan %s, not %s", sessionPath, short(rec.ConfigHash), pt.plan.ShortHash())
	case rec.Role != pt.role || rec.Mode != psi.Both.String() || !rec.Learned:
		return nil, fmt.Errorf("psi session %s: role %s, mode %s, learned %v: want %s, both, true", sessionPath, rec.Role, rec.Mode, rec.Learned, pt.role)
	}
	id, err := hex.DecodeString(rec.SessionID)
	if err != nil || len(id) != 32 {
		return nil, fmt.Errorf("psi session %s: session_id is not 64 hex digits", sessionPath)
	}
	seed, err := rec.Seed()
	if err != nil {
		return nil, fmt.Errorf("psi session %s: %w", sessionPath, err)
	}
	ids, err := join.ReadAligned(idsPath)
	if err != nil {
		return nil, err
	}
	if len(ids) != rec.Intersection {
		return nil, fmt.Errorf("%s holds %d IDs, its session record %d", idsPath, len(ids), rec.Intersection)
	}
	return &aligned{rec: rec, id: id, seed: seed, ids: ids}, nil
}

// runPSI runs a fresh ECDH-PSI session (mode both) with the peer on this
// side's IDs. With persist, the aligned IDs and then the session record are
// written atomically under psiDir (the old record is removed first, so a
// crash in between leaves no record); otherwise (prediction) they go to
// files that the next prediction overwrites.
func (pt *party) runPSI(ctx context.Context, persist bool) (*aligned, error) {
	if pt.psiT == nil {
		return nil, fmt.Errorf("vfl %s: the transport has no PSI channel", pt.role)
	}
	if err := os.MkdirAll(pt.psiDir(), 0o700); err != nil {
		return nil, err
	}
	idsPath, sessionPath := pt.alignedPath(), pt.psiSessionPath()
	if persist {
		if err := os.Remove(sessionPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	} else {
		idsPath = filepath.Join(pt.psiDir(), "predict-aligned-ids.txt")
		sessionPath = filepath.Join(pt.psiDir(), "predict-session.json")
	}
	var sb strings.Builder
	for _, id := range pt.own.IDs {
		sb.WriteString(id)
		sb.WriteByte('\n')
	}
	set, err := psi.Prepare(strings.NewReader(sb.String()), pt.plan.Dataset+" IDs", psi.PrepareOptions{TempDir: pt.psiDir(), Logger: pt.log})
	if err != nil {
		return nil, fmt.Errorf("vfl %s: PSI: %w", pt.role, err)
	}
	defer set.Close()
	cfg := psi.Config{Role: psi.Leader, Mode: psi.Both, ConfigHash: pt.plan.Hash(), Self: pt.role,
		TempDir: pt.psiDir(), Logger: pt.log}
	if pt.role == RoleFollower {
		cfg.Role = psi.Follower
	}
	if !persist && pt.role == RoleFollower {
		// A predicting follower is a service that waits for the leader as
		// long as it runs (ctx), as the bridge's first accept does; in
		// training the PSI starts right after both Hellos, so the default
		// bound applies.
		cfg.ConnectTimeout = 100 * 365 * 24 * time.Hour
	}
	if pt.o.psiRand != nil {
		cfg.Rand = pt.o.psiRand(pt.role)
	}
	pt.log.Info("PSI", "state", "starting", "method", AlignMethod, "mode", "both", "ids", set.N)
	res, err := pt.psiT.runPSI(ctx, cfg, set, idsPath)
	if err != nil {
		return nil, fmt.Errorf("vfl %s: PSI: %w", pt.role, err)
	}
	simulated := pt.att != nil && (pt.att.party.Simulated() || (pt.peer != nil && pt.peer.Simulated))
	if err := psi.NewSessionFile(res, cfg, set, simulated).Write(sessionPath); err != nil {
		return nil, fmt.Errorf("vfl %s: PSI session record: %w", pt.role, err)
	}
	a, err := pt.readAlignment(sessionPath, idsPath)
	if err != nil {
		return nil, err
	}
	rate := float64(res.Distinct+res.PeerDistinct) / max(res.Seconds, 1e-9)
	fmt.Fprintf(pt.out, "%s%s (mode both, session %x): %d IDs here, %d at the peer, %d in common; %.0f IDs/s (both sets, %.2f s), %d bytes sent, %d received\n",
		psiSummaryPrefix(pt.role), AlignMethod, res.SessionID[:8], res.Distinct, res.PeerDistinct, res.Intersection, rate, res.Seconds, res.BytesSent, res.BytesReceived)
	pt.log.Info("PSI", "state", "done", "psi_session", a.rec.SessionID[:16], "intersection", res.Intersection,
		"own_ids", res.Distinct, "peer_ids", res.PeerDistinct, "ids_per_s", int(rate), "bytes_sent", res.BytesSent, "bytes_received", res.BytesReceived)
	return a, nil
}

// psiSummaryPrefix starts a party's PSI summary line (Quickstart echoes
// the leader's).
func psiSummaryPrefix(role string) string { return "vfl " + role + ": PSI " }

// errRealigned ends a bridge session after a fresh PSI: the run loop opens
// a new stream at once, whose Hello then names the new session.
var errRealigned = errors.New("rows realigned by PSI; reconnecting")

// agreeAlignment decides from the two Hellos whether both sides hold the
// same PSI alignment. If not, and no checkpoint exists on either side, it
// runs a fresh PSI (over its own stream) and returns errRealigned, which
// closes the bridge stream. Checkpoints of another alignment cannot be resumed
// on new rows, so then it refuses.
func (pt *party) agreeAlignment(ctx context.Context, mineCkpts, peerCkpts []int64, peerSession []byte) error {
	if pt.al != nil && bytes.Equal(pt.al.id, peerSession) {
		return pt.prepare()
	}
	here, there := "none", "none"
	if pt.al != nil {
		here = short(pt.al.rec.SessionID)
	}
	if len(peerSession) > 0 {
		there = short(hex.EncodeToString(peerSession))
	}
	if len(mineCkpts) > 0 || len(peerCkpts) > 0 {
		return &bridge.ProtocolError{Msg: fmt.Sprintf("the stored alignments differ (PSI session here %s, at the peer %s) and checkpoints exist, which belong to other rows: remove both sides' state directories to start over", here, there)}
	}
	pt.log.Info("aligning rows by ECDH-PSI", "stored_here", here, "stored_at_peer", there)
	// The bridge stream stays open, idle, until the PSI is over: closing it
	// now could lose this side's Hello before the peer has read it, and the
	// peer would then wait for a new stream instead of running the PSI.
	a, err := pt.runPSI(ctx, true)
	if err != nil {
		return err
	}
	pt.al, pt.prep = a, nil
	return errRealigned
}

// prepare materialises this side's aligned tables (join.Align in the PSI
// order) and the batch schedule (join.BatchOrder with the PSI session's
// seed) the first time.
func (pt *party) prepare() error {
	if pt.prep != nil {
		return nil
	}
	prep, err := Prepare(pt.plan, pt.own, pt.al.ids)
	if err != nil {
		return err
	}
	pt.prep, pt.alignSum = prep, rowsDigest(pt.al.ids)
	pt.sched = newSchedule(pt.al.seed, prep.Train.N, prep.Test.N, pt.plan.Training.BatchSize, pt.plan.Training.Epochs)
	pt.log.Info("rows aligned", "common", len(pt.al.ids), "only_here", prep.Dropped, "train", prep.Train.N, "test", prep.Test.N,
		"iterations", pt.sched.TrainIters, "aligner", AlignMethod, "psi_session", pt.al.rec.SessionID[:16])
	fmt.Fprintf(pt.out, "vfl %s: %d rows in common with the peer (%d held only here; %s session %s), %d train / %d test, %d training iterations of batch %d\n",
		pt.role, len(pt.al.ids), prep.Dropped, AlignMethod, short(pt.al.rec.SessionID), prep.Train.N, prep.Test.N, pt.sched.TrainIters, pt.plan.Training.BatchSize)
	return nil
}

// rowsDigest is SHA-256 over the aligned IDs in order: checkpoints carry it,
// so a checkpoint is only restored onto the rows it was trained on.
func rowsDigest(ids []string) string {
	h := sha256.New()
	for _, id := range ids {
		io.WriteString(h, id)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
