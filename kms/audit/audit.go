// Package audit is the key broker's tamper-evident decision log: a hash
// chain in which entry n stores
//
//	hash_n = SHA-256("teeml-kms-audit/v1" ‖ seq_n (8 bytes BE) ‖ hash_{n-1} ‖ SHA-256(body_n))
//
// with hash_0 = 32 zero bytes, and body_n the canonical JSON of one
// decision (Record). Sequence numbers start at 1 and are contiguous.
// Verify recomputes the chain: an edited body, an inserted or deleted
// entry, or a reordering breaks it at the first affected entry.
//
// Truncating the tail (deleting the last k entries) leaves a valid shorter
// chain, so the chain alone cannot detect it. The broker therefore keeps the
// head (seq, hash) in a separate row, updated in the same transaction as each
// append and authenticated with a MAC under a key wrapped by the root key
// (Head, HeadMAC); Verify compares the chain's end with that head. Someone
// who can write the database but lacks the root key cannot forge a head
// MAC, but can roll the whole database (entries and head together) back to
// an earlier state: that is detected only against a head seen earlier — every
// broker response carries the seq and hash of its audit entry, and
// Verify's Witness option checks such a saved head is still in the chain.
package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const domain = "teeml-kms-audit/v1"

// HashSize is the size of entry hashes.
const HashSize = sha256.Size

// Decision values.
const (
	Granted = "granted"
	Refused = "refused"
)

// Caller is who asked, as verified by RA-TLS and the federation PKI.
type Caller struct {
	Name   string `json:"name,omitempty"`
	Role   string `json:"role,omitempty"`
	Serial string `json:"serial,omitempty"`
	Remote string `json:"remote,omitempty"`
}

// Evidence summarises the caller's verified attestation claims.
type Evidence struct {
	TEE         string `json:"tee,omitempty"`
	Simulated   bool   `json:"simulated,omitempty"`
	Debug       bool   `json:"debug,omitempty"`
	TCBStatus   string `json:"tcb_status,omitempty"`
	Measurement string `json:"measurement,omitempty"` // MRENCLAVE, MRTD or SNP measurement (hex)
	Signer      string `json:"signer,omitempty"`      // MRSIGNER (hex), SGX only
	Cached      bool   `json:"cached,omitempty"`      // evidence verification result came from the cache
	// Result names the attestation result (EAR) the claims came from, when
	// the caller presented one instead of its RA-TLS evidence.
	Result string `json:"result,omitempty"`
}

// Record is one decision. Its JSON encoding (Go's encoding/json of this
// struct: fixed field order, no map fields) is the hashed body.
type Record struct {
	Time       string    `json:"time"` // RFC 3339, UTC, nanoseconds
	Broker     string    `json:"broker"`
	Op         string    `json:"op"`
	Decision   string    `json:"decision"`
	KeyID      string    `json:"key_id,omitempty"`
	KeyVersion uint32    `json:"key_version,omitempty"`
	Caller     Caller    `json:"caller"`
	Evidence   *Evidence `json:"evidence,omitempty"`
	PolicyHash string    `json:"policy_sha256,omitempty"`
	// CleanRoom is set when the request named a clean-room contract.
	CleanRoom *CleanRoom `json:"cleanroom,omitempty"`
	Reason    string     `json:"reason,omitempty"`
}

// CleanRoom is the clean-room query a key was asked for.
type CleanRoom struct {
	Contract string `json:"contract_sha256"`
	Name     string `json:"contract,omitempty"` // the contract's name, once parsed
	Template string `json:"template"`
	// Query is the bound query's canonical form (template and parameters),
	// once they were checked.
	Query   string `json:"query,omitempty"`
	QueryID string `json:"query_id"`
	Owner   string `json:"owner,omitempty"`
	// Epsilon is what this release charged; EpsilonSpent the owner's total
	// after it, of EpsilonBudget (decimal strings, exact).
	Epsilon       string `json:"epsilon,omitempty"`
	EpsilonSpent  string `json:"epsilon_spent,omitempty"`
	EpsilonBudget string `json:"epsilon_budget,omitempty"`
}

// Encode returns r's canonical body.
func (r *Record) Encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic("audit: encoding a record: " + err.Error()) // only strings, bools and ints
	}
	return b
}

// Decode parses a body strictly (unknown fields refused).
func Decode(body []byte) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("audit: entry body: %w", err)
	}
	if dec.More() {
		return nil, errors.New("audit: entry body: trailing data")
	}
	return &r, nil
}

// NewRecord returns a Record stamped with now.
func NewRecord(now time.Time, broker, op, decision string) *Record {
	return &Record{Time: now.UTC().Format(time.RFC3339Nano), Broker: broker, Op: op, Decision: decision}
}

// Entry is one stored entry.
type Entry struct {
	Seq  uint64
	Prev []byte
	Hash []byte
	Body []byte
}

// Head is the chain's last position.
type Head struct {
	Seq  uint64
	Hash []byte
}

// Genesis is the head of the empty chain.
func Genesis() Head { return Head{Seq: 0, Hash: make([]byte, HashSize)} }

// String renders h as "seq:hex".
func (h Head) String() string { return fmt.Sprintf("%d:%s", h.Seq, hex.EncodeToString(h.Hash)) }

// ParseHead parses the String form.
func ParseHead(s string) (Head, error) {
	var seq uint64
	var hx string
	i := bytes.IndexByte([]byte(s), ':')
	if i <= 0 {
		return Head{}, fmt.Errorf("audit head %q: want seq:hash", s)
	}
	if _, err := fmt.Sscanf(s[:i], "%d", &seq); err != nil {
		return Head{}, fmt.Errorf("audit head %q: bad seq", s)
	}
	hx = s[i+1:]
	h, err := hex.DecodeString(hx)
	if err != nil || len(h) != HashSize {
		return Head{}, fmt.Errorf("audit head %q: want %d bytes of hex after the colon", s, HashSize)
	}
	return Head{Seq: seq, Hash: h}, nil
}

// ChainHash computes hash_n from seq, the previous hash and the body.
func ChainHash(seq uint64, prev, body []byte) []byte {
	bh := sha256.Sum256(body)
	h := sha256.New()
	h.Write([]byte(domain))
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	h.Write(s[:])
	h.Write(prev)
	h.Write(bh[:])
	return h.Sum(nil)
}

// Next returns the entry appending body after head.
func Next(head Head, body []byte) Entry {
	seq := head.Seq + 1
	return Entry{Seq: seq, Prev: bytes.Clone(head.Hash), Hash: ChainHash(seq, head.Hash, body), Body: body}
}

// HeadMAC authenticates a head under the broker's audit MAC key.
func HeadMAC(key []byte, h Head) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain + "/head"))
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], h.Seq)
	m.Write(s[:])
	m.Write(h.Hash)
	return m.Sum(nil)
}

// CheckHeadMAC reports whether mac authenticates h under key.
func CheckHeadMAC(key []byte, h Head, mac []byte) bool {
	return hmac.Equal(HeadMAC(key, h), mac)
}

// Error is a verification failure at one entry.
type Error struct {
	Seq uint64
	Msg string
}

func (e *Error) Error() string {
	if e.Seq == 0 {
		return "audit chain: " + e.Msg
	}
	return fmt.Sprintf("audit chain: entry %d: %s", e.Seq, e.Msg)
}

// Verifier checks a chain entry by entry, in order (so a long log is
// streamed, not held in memory).
type Verifier struct {
	head      Head
	witnesses map[uint64][]byte
	seen      int
	// Granted and Refused count decisions seen.
	Granted, Refused int
}

// NewVerifier starts at the genesis head. Witnesses are heads saved
// earlier (e.g. from broker responses); each must appear in the chain.
func NewVerifier(witnesses ...Head) *Verifier {
	v := &Verifier{head: Genesis(), witnesses: map[uint64][]byte{}}
	for _, w := range witnesses {
		v.witnesses[w.Seq] = w.Hash
	}
	return v
}

// Add checks the next entry.
func (v *Verifier) Add(e Entry) error {
	want := v.head.Seq + 1
	switch {
	case e.Seq < want:
		return &Error{Seq: e.Seq, Msg: fmt.Sprintf("out of order or duplicated (expected entry %d)", want)}
	case e.Seq > want:
		return &Error{Seq: e.Seq, Msg: fmt.Sprintf("entries %d to %d missing (deleted?)", want, e.Seq-1)}
	}
	if !bytes.Equal(e.Prev, v.head.Hash) {
		return &Error{Seq: e.Seq, Msg: fmt.Sprintf("previous hash %s does not match entry %d's hash %s (entry inserted or deleted before it)",
			short(e.Prev), v.head.Seq, short(v.head.Hash))}
	}
	if got := ChainHash(e.Seq, e.Prev, e.Body); !bytes.Equal(got, e.Hash) {
		return &Error{Seq: e.Seq, Msg: fmt.Sprintf("stored hash %s, recomputed %s: the entry was edited", short(e.Hash), short(got))}
	}
	r, err := Decode(e.Body)
	if err != nil {
		return &Error{Seq: e.Seq, Msg: err.Error()}
	}
	switch r.Decision {
	case Granted:
		v.Granted++
	case Refused:
		v.Refused++
	default:
		return &Error{Seq: e.Seq, Msg: fmt.Sprintf("decision %q is neither granted nor refused", r.Decision)}
	}
	if w, ok := v.witnesses[e.Seq]; ok && !bytes.Equal(w, e.Hash) {
		return &Error{Seq: e.Seq, Msg: fmt.Sprintf("hash %s differs from the witnessed %s (log rewritten since)", short(e.Hash), short(w))}
	}
	v.head = Head{Seq: e.Seq, Hash: bytes.Clone(e.Hash)}
	v.seen++
	return nil
}

// Head is the last verified position.
func (v *Verifier) Head() Head { return v.head }

// Finish compares the end of the chain with the stored head (when non-nil)
// and checks every witness was reached.
func (v *Verifier) Finish(stored *Head) error {
	if stored != nil {
		if stored.Seq != v.head.Seq || !bytes.Equal(stored.Hash, v.head.Hash) {
			if stored.Seq > v.head.Seq {
				return &Error{Msg: fmt.Sprintf("chain ends at entry %d but the head records entry %d (%s): the tail was truncated",
					v.head.Seq, stored.Seq, short(stored.Hash))}
			}
			return &Error{Msg: fmt.Sprintf("chain ends at %s but the head records %s", v.head, stored)}
		}
	}
	for seq := range v.witnesses {
		if seq > v.head.Seq {
			return &Error{Msg: fmt.Sprintf("witnessed entry %d is beyond the chain's end %d: the tail was truncated or rolled back", seq, v.head.Seq)}
		}
	}
	return nil
}

func short(b []byte) string {
	if len(b) > 6 {
		return hex.EncodeToString(b[:6]) + "…"
	}
	return hex.EncodeToString(b)
}
