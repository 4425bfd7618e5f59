package psi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/teeml/teeml/internal/atomicfile"

	psiv1 "github.com/teeml/teeml/api/proto/teeml/psi/v1"
)

// logEvery is the number of batches between progress log lines.
const logEvery = 256

func batches(n, b int) int { return (n + b - 1) / b }

// ownSet streams this party's blinded IDs (step 1 or 2). When answered, the
// peer returns the doubly blinded digests batch by batch, in order, and
// ownSet returns them as records; up to Window batches are in flight.
func (s *session) ownSet(step int, answered bool) ([]record, error) {
	sr, err := s.set.reader()
	if err != nil {
		return nil, err
	}
	b := s.cfg.BatchSize
	nb := batches(s.set.N, b)
	sem := make(chan struct{}, s.cfg.Window)
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- func() error {
			var ids []string
			var err error
			for seq := 0; ; seq++ {
				if ids, err = sr.next(ids, b); err != nil {
					return err
				}
				if len(ids) == 0 {
					break
				}
				if answered {
					select {
					case sem <- struct{}{}:
					case <-s.ctx.Done():
						return context.Cause(s.ctx)
					}
				}
				m := &psiv1.PSIMessage{Body: &psiv1.PSIMessage_Points{Points: &psiv1.Points{Seq: uint64(seq), Data: s.blind(ids)}}}
				if err := s.send(m); err != nil {
					return err
				}
				if (seq+1)%logEvery == 0 {
					sent, _ := s.byteCounts()
					s.log.Info("psi: blinded and sent", "step", step, "ids", min((seq+1)*b, s.set.N), "of", s.set.N, "bytes_sent", sent)
				}
			}
			return s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_EndOfSet{EndOfSet: &psiv1.EndOfSet{Count: uint64(s.set.N)}}})
		}()
	}()
	if !answered {
		if err := <-sendErr; err != nil {
			return nil, err
		}
		s.log.Info("psi: own set sent", "step", step, "ids", s.set.N)
		return nil, nil
	}
	recs := make([]record, 0, s.set.N)
	for seq := range nb {
		m, err := s.recv("Digests")
		if err != nil {
			return nil, err
		}
		d := m.GetDigests()
		if d == nil {
			return nil, fmt.Errorf("psi: protocol: step %d: expected Digests from %q, got %T", step, s.peer, m.GetBody())
		}
		want := min(b, s.set.N-seq*b)
		if d.GetSeq() != uint64(seq) || len(d.GetData()) != want*DigestLen {
			return nil, fmt.Errorf("psi: protocol: step %d: Digests %d from %q with %d bytes, want batch %d with %d",
				step, d.GetSeq(), s.peer, len(d.GetData()), seq, want*DigestLen)
		}
		for j := range want {
			var r record
			copy(r.d[:], d.GetData()[j*DigestLen:])
			r.idx = uint32(seq*b + j)
			recs = append(recs, r)
		}
		<-sem
	}
	if err := <-sendErr; err != nil {
		return nil, err
	}
	sent, recvd := s.byteCounts()
	s.log.Info("psi: own set doubly blinded", "step", step, "ids", s.set.N, "bytes_sent", sent, "bytes_received", recvd)
	return recs, nil
}

// helpPeer raises the peer's blinded IDs to this side's secret (step 1 or
// 2). When answered it returns each batch's digests to the peer; otherwise
// (the leader in mode leader-learns, step 2) it keeps them.
func (s *session) helpPeer(step int, answered bool) ([][DigestLen]byte, error) {
	var kept [][DigestLen]byte
	total := 0
	for seq := uint64(0); ; seq++ {
		m, err := s.recv("Points")
		if err != nil {
			return nil, err
		}
		if e := m.GetEndOfSet(); e != nil {
			if e.GetCount() != uint64(total) {
				return nil, fmt.Errorf("psi: protocol: step %d: peer %q announced %d IDs but sent %d", step, s.peer, e.GetCount(), total)
			}
			s.res.PeerDistinct = total
			s.log.Info("psi: peer set blinded", "step", step, "peer_ids", total, "answered", answered)
			return kept, nil
		}
		p := m.GetPoints()
		if p == nil {
			return nil, fmt.Errorf("psi: protocol: step %d: expected Points from %q, got %T", step, s.peer, m.GetBody())
		}
		if err := checkPoints(p, seq); err != nil {
			return nil, fmt.Errorf("psi: step %d: peer %q: %w", step, s.peer, err)
		}
		n := len(p.GetData()) / pointLen
		if total+n > maxSetSize {
			return nil, fmt.Errorf("psi: step %d: peer %q sent more than %d IDs", step, s.peer, maxSetSize)
		}
		out, err := s.reblind(p.GetData())
		if err != nil {
			return nil, fmt.Errorf("psi: step %d: peer %q batch %d: %w", step, s.peer, seq, err)
		}
		total += n
		if answered {
			if err := s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Digests{Digests: &psiv1.Digests{Seq: seq, Data: out}}}); err != nil {
				return nil, err
			}
		} else {
			for j := range n {
				kept = append(kept, [DigestLen]byte(out[j*DigestLen:(j+1)*DigestLen]))
			}
		}
		if (seq+1)%logEvery == 0 {
			_, recvd := s.byteCounts()
			s.log.Info("psi: peer IDs blinded", "step", step, "peer_ids", total, "bytes_received", recvd)
		}
	}
}

// checkPoints validates the framing of a Points message: its sequence
// number and a whole, non-empty number of points, at most MaxBatch. The
// points themselves are checked when decoded.
func checkPoints(p *psiv1.Points, seq uint64) error {
	d := p.GetData()
	switch {
	case p.GetSeq() != seq:
		return fmt.Errorf("batch %d out of order (want %d)", p.GetSeq(), seq)
	case len(d) == 0 || len(d)%pointLen != 0:
		return fmt.Errorf("batch %d: %d bytes is not a whole number of %d-byte points", seq, len(d), pointLen)
	case len(d)/pointLen > MaxBatch:
		return fmt.Errorf("batch %d: %d points, more than %d", seq, len(d)/pointLen, MaxBatch)
	}
	return nil
}

// ranksOf turns matched records, in digest order, into ranks indexed by set
// index: rank k+1 for the k-th common ID, 0 for the others.
type ranker struct {
	ranks []uint32
	n     uint32
}

func (r *ranker) mark(idx uint32) {
	r.n++
	r.ranks[idx] = r.n
}

// intersectLocal is the leader in mode leader-learns: both sides' digests
// are here; merge them.
func (s *session) intersectLocal(own []record, peer [][DigestLen]byte) []uint32 {
	slices.SortFunc(peer, func(a, b [DigestLen]byte) int { return bytes.Compare(a[:], b[:]) })
	rk := &ranker{ranks: make([]uint32, s.set.N)}
	i, j := 0, 0
	for i < len(own) && j < len(peer) {
		switch c := bytes.Compare(own[i].d[:], peer[j][:]); {
		case c < 0:
			i++
		case c > 0:
			j++
		default:
			rk.mark(own[i].idx)
			i++
			j++
		}
	}
	return rk.ranks
}

// leaderMatch is step 3 on the leader (mode both): stream the own digests
// in sorted order; the follower answers each batch with the digests it
// also holds.
func (s *session) leaderMatch(own []record) ([]uint32, error) {
	b := s.cfg.BatchSize
	nb := batches(len(own), b)
	sem := make(chan struct{}, s.cfg.Window)
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- func() error {
			for seq := range nb {
				select {
				case sem <- struct{}{}:
				case <-s.ctx.Done():
					return context.Cause(s.ctx)
				}
				part := own[seq*b : min((seq+1)*b, len(own))]
				data := make([]byte, 0, len(part)*DigestLen)
				for _, r := range part {
					data = append(data, r.d[:]...)
				}
				if err := s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Digests{Digests: &psiv1.Digests{Seq: uint64(seq), Data: data}}}); err != nil {
					return err
				}
			}
			return s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_EndOfSet{EndOfSet: &psiv1.EndOfSet{Count: uint64(len(own))}}})
		}()
	}()
	rk := &ranker{ranks: make([]uint32, s.set.N)}
	i := 0
	for seq := range nb {
		m, err := s.recv("matched Digests")
		if err != nil {
			return nil, err
		}
		d := m.GetDigests()
		if d == nil || d.GetSeq() != uint64(seq) || len(d.GetData())%DigestLen != 0 {
			return nil, fmt.Errorf("psi: protocol: step 3: expected matched Digests %d from %q", seq, s.peer)
		}
		// The matches are a sorted subset of the batch just sent.
		hi := min((seq+1)*b, len(own))
		data := d.GetData()
		for k := 0; k < len(data); k += DigestLen {
			v := data[k : k+DigestLen]
			for i < hi && bytes.Compare(own[i].d[:], v) < 0 {
				i++
			}
			if i == hi || !bytes.Equal(own[i].d[:], v) {
				return nil, fmt.Errorf("psi: protocol: step 3: peer %q reported a match in batch %d that this side did not send", s.peer, seq)
			}
			rk.mark(own[i].idx)
			i++
		}
		i = hi
		<-sem
	}
	if err := <-sendErr; err != nil {
		return nil, err
	}
	return rk.ranks, nil
}

// followerMatch is step 3 on the follower (mode both): merge the leader's
// sorted digest stream with the own sorted records and answer each batch
// with the common digests.
func (s *session) followerMatch(own []record) ([]uint32, error) {
	rk := &ranker{ranks: make([]uint32, s.set.N)}
	var last []byte
	i, total := 0, 0
	for seq := uint64(0); ; seq++ {
		m, err := s.recv("sorted Digests")
		if err != nil {
			return nil, err
		}
		if e := m.GetEndOfSet(); e != nil {
			if e.GetCount() != uint64(total) || total != s.res.PeerDistinct {
				return nil, fmt.Errorf("psi: protocol: step 3: peer %q sent %d digests, announced %d, had %d IDs", s.peer, total, e.GetCount(), s.res.PeerDistinct)
			}
			return rk.ranks, nil
		}
		d := m.GetDigests()
		if d == nil || d.GetSeq() != seq {
			return nil, fmt.Errorf("psi: protocol: step 3: expected sorted Digests %d from %q", seq, s.peer)
		}
		if err := checkSortedDigests(d.GetData(), last); err != nil {
			return nil, fmt.Errorf("psi: step 3: peer %q batch %d: %w", s.peer, seq, err)
		}
		data := d.GetData()
		total += len(data) / DigestLen
		if total > s.res.PeerDistinct {
			return nil, fmt.Errorf("psi: protocol: step 3: peer %q sent more digests than its %d IDs", s.peer, s.res.PeerDistinct)
		}
		var matched []byte
		for k := 0; k < len(data); k += DigestLen {
			v := data[k : k+DigestLen]
			for i < len(own) && bytes.Compare(own[i].d[:], v) < 0 {
				i++
			}
			if i < len(own) && bytes.Equal(own[i].d[:], v) {
				rk.mark(own[i].idx)
				matched = append(matched, v...)
				i++
			}
		}
		last = data[len(data)-DigestLen:]
		if err := s.send(&psiv1.PSIMessage{Body: &psiv1.PSIMessage_Digests{Digests: &psiv1.Digests{Seq: seq, Data: matched}}}); err != nil {
			return nil, err
		}
	}
}

// checkSortedDigests checks that data is a non-empty whole number of
// digests, at most MaxBatch, strictly increasing and above prev (the last
// digest of the previous batch, or nil).
func checkSortedDigests(data, prev []byte) error {
	if len(data) == 0 || len(data)%DigestLen != 0 || len(data)/DigestLen > MaxBatch {
		return fmt.Errorf("%d bytes is not 1 to %d digests of %d bytes", len(data), MaxBatch, DigestLen)
	}
	for k := 0; k < len(data); k += DigestLen {
		v := data[k : k+DigestLen]
		if prev != nil && bytes.Compare(prev, v) >= 0 {
			return errors.New("digests not strictly increasing")
		}
		prev = v
	}
	return nil
}

// writeAligned writes the common IDs, one per line, in the order of their
// doubly blinded digests: the same order on both sides (the digests are
// equal), independent of either input order, and unpredictable without
// both secrets. The rank-to-ID mapping is an external sort, so memory stays
// bounded by MemoryBudget.
func (s *session) writeAligned(ranks []uint32) error {
	if s.outPath == "" {
		return errors.New("psi: no output path")
	}
	sr, err := s.set.reader()
	if err != nil {
		return err
	}
	sorter := newExtSorter(s.cfg.TempDir, s.cfg.MemoryBudget)
	defer sorter.close()
	var ids []string
	for idx := 0; ; {
		if ids, err = sr.next(ids, 4096); err != nil {
			return err
		}
		if len(ids) == 0 {
			break
		}
		for _, id := range ids {
			if r := ranks[idx]; r > 0 {
				if err := sorter.add(beUint32(r-1), id); err != nil {
					return err
				}
			}
			idx++
		}
	}
	return atomicfile.WriteFile(s.outPath, 0o600, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := sorter.each(func(k keyed) error {
			bw.WriteString(k.id)
			return bw.WriteByte('\n')
		}); err != nil {
			return err
		}
		return bw.Flush()
	})
}
