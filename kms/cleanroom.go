package kms

import (
	"math"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/teeml/teeml/api/proto/teeml/kms/v1"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/contract"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/store"
)

// A key bound to a clean-room contract (its release policy lists the
// contract's hash) is released to a caller outside the policy's members
// and roles only when every check below passes, in this order, each refusal
// audited with its reason and nothing released:
//
//  1. the request names a contract whose SHA-256 the key is bound to (a
//     contract changed by one byte is another contract);
//  2. it parses, and every owner it names signed exactly these bytes with
//     its current federation identity;
//  3. the caller is one of the contract's analytics members and its
//     verified attestation satisfies the contract's analytics policy;
//  4. the key is the key of an owner whose tables the named template
//     reads, and the template is in the contract;
//  5. the parameters bind (types, bounds, enums);
//  6. when the template adds noise, the owner's ε budget under this
//     contract covers it: the charge and the grant's audit entry commit in
//     one transaction, so the budget survives restarts of the analytics
//     party and of the broker, and a query (its query_id) pays once per
//     owner however many of the owner's keys it needs.
//
// The analytics party (attested code, named by the contract) runs the
// bound template and enforces the output rules: minimum group size and the
// noise. The broker's audit entry names the contract, the template and the
// bound parameters of every release and refusal.

var queryIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// roomCharge is the ε a clean-room release will charge.
type roomCharge struct {
	contract, owner, queryID string
	cost, limit              int64 // micro-ε
}

func micro(eps float64) int64 { return int64(math.Round(eps * 1e6)) }

// cleanRoom runs checks 1–5 for releasing k (policy rp) under q and returns
// the charge to make (nil: none).
func (c *call) cleanRoom(k *store.Key, rp *ReleasePolicy, q *kmsv1.CleanRoomQuery) (*roomCharge, error) {
	hash := contract.Hash(q.GetContract())
	room := &audit.CleanRoom{Contract: hash, Template: q.GetTemplate(), QueryID: q.GetQueryId()}
	c.rec.CleanRoom = room
	if !slices.Contains(rp.Contracts, hash) {
		if len(rp.Contracts) == 0 {
			return nil, c.refuse(codes.PermissionDenied, "key %q is bound to no clean-room contract (asked for contract sha256 %.16s…)", k.ID, hash)
		}
		return nil, c.refuse(codes.PermissionDenied, "key %q is not bound to contract sha256 %.16s… (bound to %s): the contract differs from the one its owner approved", k.ID, hash, shortList(rp.Contracts))
	}
	if !queryIDRE.MatchString(q.GetQueryId()) {
		return nil, c.refuse(codes.InvalidArgument, "query_id %q: want 8 to 64 of A-Z a-z 0-9 _ -", q.GetQueryId())
	}
	ct, err := c.b.contract(q.GetContract())
	if err != nil {
		return nil, c.refuse(codes.InvalidArgument, "%v", err)
	}
	room.Name = ct.Name
	sigs, err := contract.ParseSignatures(q.GetSignatures())
	if err != nil {
		return nil, c.refuse(codes.InvalidArgument, "contract %s: %v", ct.Name, err)
	}
	if _, err := contract.VerifySignatures(ct, sigs, c.b.cfg.Federation, c.b.cfg.Now()); err != nil {
		return nil, c.refuse(codes.PermissionDenied, "%v", err)
	}
	name := c.peer.Identity.Name
	if !slices.Contains(ct.Analytics.Members, name) {
		return nil, c.refuse(codes.PermissionDenied, "contract %s: member %q is not its analytics party (%s)", ct.Name, name, strings.Join(ct.Analytics.Members, ", "))
	}
	now := c.b.cfg.Now()
	if !c.peer.Identity.NotAfter.IsZero() && now.After(c.peer.Identity.NotAfter) {
		return nil, c.refuse(codes.PermissionDenied, "member %q: identity certificate expired", name)
	}
	d := ct.Analytics.Policy.Evaluate(contract.AnalyticsRole, c.peer.Claims, policy.At(now), policy.Peer(name), policy.Logger(c.b.log))
	if err := d.Err(); err != nil {
		return nil, c.refuse(codes.PermissionDenied, "contract %s: analytics attestation: %v", ct.Name, err)
	}
	owner, ok := ct.OwnerOfKey(k.ID)
	if !ok {
		return nil, c.refuse(codes.PermissionDenied, "contract %s: key %q is no owner's key", ct.Name, k.ID)
	}
	room.Owner = owner
	tm, err := ct.Template(q.GetTemplate())
	if err != nil {
		return nil, c.refuse(codes.PermissionDenied, "%v", err)
	}
	if !slices.Contains(ct.OwnersOf(tm), owner) {
		return nil, c.refuse(codes.PermissionDenied, "contract %s: template %s reads no table of owner %s, so it gets no key of theirs", ct.Name, tm.Name, owner)
	}
	bound, err := tm.Bind(q.GetParams())
	if err != nil {
		return nil, c.refuse(codes.InvalidArgument, "%v", err)
	}
	room.Query = string(bound.Canonical())
	if tm.Noise == nil {
		return nil, nil
	}
	return &roomCharge{contract: hash, owner: owner, queryID: q.GetQueryId(), cost: micro(tm.Noise.Epsilon), limit: micro(ct.Owners[owner].Epsilon)}, nil
}

// contract parses raw, cached by hash (bounded).
func (b *Broker) contract(raw []byte) (*contract.Contract, error) {
	h := contract.Hash(raw)
	b.mu.Lock()
	ct := b.contracts[h]
	b.mu.Unlock()
	if ct != nil {
		return ct, nil
	}
	ct, err := contract.Parse(raw, "contract "+h[:16])
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if len(b.contracts) > 256 {
		clear(b.contracts)
	}
	b.contracts[h] = ct
	b.mu.Unlock()
	return ct, nil
}

// grantCharged records the grant and the ε charge in one transaction.
func (c *call) grantCharged(ch *roomCharge) (*kmsv1.AuditRef, error) {
	room := c.rec.CleanRoom
	h, err := c.b.cfg.Store.Update(c.ctx, c.b.macKey, func(tx *store.Tx) error {
		spent, charged, err := tx.Spend(ch.contract, ch.owner, ch.queryID, ch.cost, ch.limit)
		if err != nil {
			return err
		}
		room.Epsilon = "0"
		if charged {
			room.Epsilon = store.Micro(ch.cost)
		}
		room.EpsilonSpent, room.EpsilonBudget = store.Micro(spent), store.Micro(ch.limit)
		c.rec.Decision, c.rec.Reason = audit.Granted, ""
		return nil
	}, c.rec.Encode)
	if err != nil {
		return nil, c.refuse(storeCode(err), "%v", err)
	}
	if err := c.b.anchor.advance(h); err != nil {
		c.b.log.Error("kms: audit anchor write failed", "err", err)
		return nil, status.Errorf(codes.Unavailable, "kms: audit log unavailable: %v", err)
	}
	c.b.decisions.WithLabelValues(c.rec.Op, audit.Granted).Inc()
	c.b.log.Info("kms: clean-room release", "key", c.rec.KeyID, "contract", room.Name, "template", room.Template,
		"owner", room.Owner, "epsilon", room.Epsilon, "epsilon_spent", room.EpsilonSpent, "audit_seq", h.Seq)
	return ref(h), nil
}
