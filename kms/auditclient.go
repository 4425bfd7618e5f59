package kms

import (
	"context"
	"errors"
	"fmt"
	"io"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/kms/audit"
)

// StreamAudit reads the broker's audit entries from seq from on, calling f
// for each entry and head for the stored head the broker sends (its MAC
// checked by the broker). The caller must be a broker admin.
func (c *Client) StreamAudit(ctx context.Context, from uint64, f func(audit.Entry) error, head func(*kmsv1.AuditHead)) error {
	s, err := c.ReadAudit(ctx, &kmsv1.ReadAuditRequest{FromSeq: from})
	if err != nil {
		return err
	}
	for {
		ch, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range ch.Entries {
			if err := f(audit.Entry{Seq: e.Seq, Prev: e.PrevHash, Hash: e.Hash, Body: e.Body}); err != nil {
				return err
			}
		}
		if ch.Head != nil && head != nil {
			head(ch.Head)
		}
	}
}

// VerifiedAudit reads the whole audit log, verifies its hash chain up to
// the stored head (whose MAC the broker checked) and returns the decoded
// records in order.
func (c *Client) VerifiedAudit(ctx context.Context) ([]*audit.Record, *audit.Verifier, error) {
	v := audit.NewVerifier()
	var recs []*audit.Record
	var head *kmsv1.AuditHead
	err := c.StreamAudit(ctx, 1, func(e audit.Entry) error {
		if err := v.Add(e); err != nil {
			return err
		}
		r, err := audit.Decode(e.Body)
		if err != nil {
			return fmt.Errorf("audit entry %d: %w", e.Seq, err)
		}
		recs = append(recs, r)
		return nil
	}, func(h *kmsv1.AuditHead) { head = h })
	if err != nil {
		return nil, nil, err
	}
	if head == nil {
		return nil, nil, errors.New("audit chain: the broker sent no head")
	}
	if !head.MacOk {
		return nil, nil, fmt.Errorf("audit chain: the stored head %s is not authenticated by its MAC", audit.Head{Seq: head.Seq, Hash: head.Hash})
	}
	if err := v.Finish(&audit.Head{Seq: head.Seq, Hash: head.Hash}); err != nil {
		return nil, nil, err
	}
	return recs, v, nil
}
