package run

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	vflv1 "github.com/teeml/teeml/api/proto/teeml/vfl/v1"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/vfl/bridge"
	"github.com/teeml/teeml/vfl/join"
	"github.com/teeml/teeml/vfl/split"
)

// PredictOptions configures Predict.
type PredictOptions struct {
	Options
	// Model is this side's exported half (default
	// <state>/model/<role>.safetensors).
	Model string
	// IDs optionally restricts the rows to the IDs listed in this file, one
	// per line (leader; the alignment restricts the follower accordingly).
	IDs string
	// Output is the predictions CSV the leader writes (id,probability[,label]).
	Output string
}

// PredictResult is what a prediction session produced.
type PredictResult struct {
	Rows    int
	Output  string         // leader: the CSV written
	Metrics *split.Metrics // leader, when its rows carry labels
}

// Predict runs joint inference: both sides load their exported half, align
// their rows (restricted to IDs on the leader), and the follower sends
// act1_f batch by batch over the bridge (a "predict" session: Start, Data,
// Commit, no gradient); the leader applies its half and writes the
// probabilities. A broken stream restarts the session from the first batch
// (inference has no state to resume).
func Predict(ctx context.Context, o PredictOptions) (*PredictResult, error) {
	pt, conn, closeFn, err := newParty(ctx, &o.Options, " predict")
	if err != nil {
		return nil, err
	}
	defer closeFn()
	if o.Model == "" {
		o.Model = filepath.Join(o.StateDir, "model", o.Role+".safetensors")
	}
	md, w, spec, pipe, err := LoadHalf(o.Model)
	if err != nil {
		return nil, err
	}
	if md[metaPlanHash] != pt.plan.Hash() || md[metaRole] != o.Role {
		return nil, fmt.Errorf("vfl predict: %s is the %s half of plan %s, not the %s half of plan %s",
			o.Model, md[metaRole], short(md[metaPlanHash]), o.Role, pt.plan.ShortHash())
	}
	if o.Role == RoleLeader {
		if pt.leader, err = split.NewLeader(spec); err == nil {
			err = pt.leader.SetWeights(w)
		}
	} else {
		if pt.follower, err = split.NewFollower(spec); err == nil {
			err = pt.follower.SetWeights(w)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("vfl predict: %s: %w", o.Model, err)
	}
	if o.IDs != "" {
		ids, err := readIDs(o.IDs)
		if err != nil {
			return nil, err
		}
		keep := make(map[string]bool, len(ids))
		for _, id := range ids {
			keep[id] = true
		}
		var sel []string
		for _, id := range pt.own.IDs {
			if keep[id] {
				sel = append(sel, id)
			}
		}
		if pt.own, err = selectIDs(pt.own, sel); err != nil {
			return nil, err
		}
	}
	if pt.own, err = pipe.Apply(pt.own); err != nil {
		return nil, fmt.Errorf("vfl predict: %s: %w", o.Model, err)
	}
	// A fresh PSI session on the rows of this prediction (the leader's may
	// be restricted to IDs); both sides then name it in the bridge Hello.
	if pt.al, err = pt.runPSI(ctx, false); err != nil {
		return nil, err
	}
	var res *PredictResult
	_, err = pt.run(ctx, conn, func(ctx context.Context, c *bridge.Conn) (*Result, error) {
		r, err := pt.predictSession(ctx, c, o)
		res = r
		return &Result{}, err
	})
	if err != nil {
		return nil, err
	}
	if res.Output != "" {
		fmt.Fprintf(o.Out, "vfl leader predict: %d rows → %s\n", res.Rows, res.Output)
	}
	if m := res.Metrics; m != nil {
		fmt.Fprintf(o.Out, "vfl leader predict: auc=%s accuracy=%s log_loss=%s on these rows' labels\n", fmtMetric(m.AUC), fmtMetric(m.Accuracy), fmtMetric(m.LogLoss))
	}
	return res, nil
}

func readIDs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vfl predict: IDs: %w", err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(io.LimitReader(f, 256<<20))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
			ids = append(ids, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vfl predict: IDs %s: %w", path, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("vfl predict: IDs %s: no ID listed", path)
	}
	return ids, nil
}

func (pt *party) predictSession(ctx context.Context, c *bridge.Conn, o PredictOptions) (*PredictResult, error) {
	defer c.Close()
	pt.log.Info("bridge channel", "state", "connected")
	mine := &vflv1.Hello{PlanHash: pt.plan.Hash(), Role: pt.role, Session: bridge.SessionPredict, PsiSession: pt.al.id}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	peerHello, err := bridge.Handshake(hctx, c, mine)
	cancel()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(peerHello.GetPsiSession(), pt.al.id) {
		return nil, &bridge.ProtocolError{Msg: fmt.Sprintf("the peer predicts on PSI session %s, this side on %s",
			short(hex.EncodeToString(peerHello.GetPsiSession())), short(pt.al.rec.SessionID))}
	}
	common := pt.al.ids
	if len(common) == 0 {
		return nil, fmt.Errorf("vfl predict: the parties have no ID in common")
	}
	rows, err := join.Align(pt.own, common)
	if err != nil {
		return nil, err
	}
	pt.log.Info("bridge channel", "state", "ready", "rows", len(common))
	nw := pt.plan.Network
	sess := bridge.NewSession(c, 0, bridge.Config{RecvTimeout: time.Duration(nw.RecvTimeout),
		Heartbeat: time.Duration(nw.Heartbeat), PeerTimeout: time.Duration(nw.PeerTimeout), Logger: pt.log, Peer: otherRole(pt.role)})
	defer func() { sess.Close(); c.Close(); sess.Wait() }()
	batch := pt.plan.Training.BatchSize
	total := int64((len(common) + batch - 1) / batch)
	width := pt.plan.Model.ActWidth
	probs := make([]float64, 0, len(common))
	var x, y []float32
	for it := int64(1); it <= total; it++ {
		lo, hi := int(it-1)*batch, min(int(it)*batch, len(common))
		idx := make([]int, hi-lo)
		for i := range idx {
			idx[i] = lo + i
		}
		x, y = gather(rows, idx, x, y)
		n := len(idx)
		if pt.role == RoleFollower && it > evalWindow {
			if err := sess.WaitPeerCommit(ctx, it-evalWindow); err != nil {
				return nil, err
			}
		}
		if err := sess.Start(it); err != nil {
			return nil, err
		}
		if pt.role == RoleFollower {
			act, err := pt.follower.Forward(x, n)
			if err != nil {
				return nil, err
			}
			if err := sess.Send(split.ActName, []int{n, width}, act); err != nil {
				return nil, err
			}
		} else {
			shape, act, err := sess.Recv(ctx, split.ActName)
			if err != nil {
				return nil, err
			}
			if len(shape) != 2 || shape[0] != n || shape[1] != width {
				return nil, &bridge.ProtocolError{Msg: fmt.Sprintf("follower sent %s of shape %v, want [%d %d]", split.ActName, shape, n, width)}
			}
			p, err := pt.leader.Predict(x, act, n)
			if err != nil {
				return nil, err
			}
			probs = append(probs, p...)
		}
		if err := sess.Commit(); err != nil {
			return nil, err
		}
	}
	if err := sess.WaitPeerCommit(ctx, total); err != nil {
		return nil, err
	}
	pt.endSession(ctx, sess)
	res := &PredictResult{Rows: len(common)}
	if pt.role != RoleLeader {
		return res, nil
	}
	out := o.Output
	if out == "" {
		out = filepath.Join(o.StateDir, "predictions.csv")
	}
	err = atomicfile.WriteFile(out, 0o644, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		hdr := []string{"id", "probability"}
		if rows.Y != nil {
			hdr = append(hdr, "label")
		}
		if err := cw.Write(hdr); err != nil {
			return err
		}
		for i, id := range common {
			rec := []string{id, strconv.FormatFloat(probs[i], 'f', 6, 64)}
			if rows.Y != nil {
				rec = append(rec, strconv.Itoa(int(rows.Y[i])))
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	})
	if err != nil {
		return nil, err
	}
	res.Output = out
	if rows.Y != nil {
		m := split.Evaluate(probs, rows.Y)
		res.Metrics = &m
	}
	return res, nil
}

func otherRole(role string) string {
	if role == RoleLeader {
		return RoleFollower
	}
	return RoleLeader
}
