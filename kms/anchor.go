package kms

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/kms/audit"
	"github.com/teeml/teeml/kms/store"
)

// The audit anchor proves the audit log is complete. The head row and the
// MAC on it live in the store, so whoever can delete rows can also delete
// the head and let the broker start a fresh chain at entry 1. The anchor is
// kept outside the store, in a small file the broker rewrites (in place,
// fsynced) after every audit commit and before the operation is
// acknowledged: the position of the newest head it committed, authenticated
// by an HMAC under the audit MAC key (itself wrapped by the root key, so
// nobody without the root key can forge an anchor). At start, and in `kms
// audit verify --local`, the store must reach the anchored entry with the
// anchored hash; a store that is behind it (rows wiped, truncated, replaced
// by an older copy) or that is not a continuation of it is refused.
//
// What the anchor cannot detect is a rollback of the store and the anchor
// file together to an earlier consistent pair: for that, keep the witness
// `audit verify` prints somewhere the broker's host cannot rewrite.
//
// The file is two slots of anchorSlot bytes, each one line padded with NUL
// bytes:
//
//	teeml-kms-audit-anchor v1 SEQ:HASH MAC
//
// Writes alternate between the slots (one write and one fsync per group
// commit, no rename), so a write torn by a crash leaves the other slot, one
// commit older and still behind the store, to be read. The newest slot
// whose MAC verifies is the anchor.
const anchorMagic = "teeml-kms-audit-anchor v1"

// anchorSlot is the size of one slot (one disk sector; the line is about
// 190 bytes).
const anchorSlot = 512

func anchorMAC(macKey []byte, h audit.Head) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte("teeml-kms/audit-anchor/v1"))
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], h.Seq)
	m.Write(s[:])
	m.Write(h.Hash)
	return m.Sum(nil)
}

// encodeSlot is one slot holding h.
func encodeSlot(macKey []byte, h audit.Head) []byte {
	b := make([]byte, anchorSlot)
	copy(b, fmt.Appendf(nil, "%s %s %s\n", anchorMagic, h, hex.EncodeToString(anchorMAC(macKey, h))))
	return b
}

// encodeAnchor is a whole anchor file holding h in both slots.
func encodeAnchor(macKey []byte, h audit.Head) []byte {
	s := encodeSlot(macKey, h)
	return append(s, s...)
}

// parseSlot parses and authenticates one slot; forged reports a well-formed
// slot whose MAC does not verify.
func parseSlot(b, macKey []byte) (h audit.Head, forged bool, err error) {
	line, found := strings.CutSuffix(string(bytes.TrimRight(b, "\x00")), "\n")
	rest, magic := strings.CutPrefix(line, anchorMagic+" ")
	fields := strings.Split(rest, " ")
	if !found || !magic || len(fields) != 2 {
		return audit.Head{}, false, errors.New("not an anchor line")
	}
	if h, err = audit.ParseHead(fields[0]); err != nil {
		return audit.Head{}, false, err
	}
	mac, err := hex.DecodeString(fields[1])
	if err != nil || !hmac.Equal(mac, anchorMAC(macKey, h)) {
		return audit.Head{}, true, errors.New("MAC does not verify")
	}
	return h, false, nil
}

// readAnchor reads and authenticates the anchor at path; ok is false when
// the file does not exist.
func readAnchor(path string, macKey []byte) (h audit.Head, ok bool, err error) {
	h, _, ok, err = readAnchorSlot(path, macKey)
	return h, ok, err
}

// readAnchorSlot is readAnchor that also returns the slot holding the
// anchor.
func readAnchorSlot(path string, macKey []byte) (h audit.Head, slot int, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return audit.Head{}, 0, false, nil
	}
	if err != nil {
		return audit.Head{}, 0, false, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, 2*anchorSlot+1))
	if err != nil {
		return audit.Head{}, 0, false, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	if len(buf) != 2*anchorSlot {
		return audit.Head{}, 0, false, fmt.Errorf("audit anchor %s: not a %q file (%d bytes, want two slots of %d)", path, anchorMagic+" SEQ:HASH MAC", len(buf), anchorSlot)
	}
	valid, forged := 0, false
	for i := range 2 {
		sh, f, err := parseSlot(buf[i*anchorSlot:(i+1)*anchorSlot], macKey)
		forged = forged || f
		if err != nil {
			continue
		}
		if valid == 0 || sh.Seq > h.Seq {
			h, slot = sh, i
		}
		valid++
	}
	switch {
	case valid > 0:
		return h, slot, true, nil
	case forged:
		return audit.Head{}, 0, false, fmt.Errorf("audit anchor %s is not authenticated by this store's audit MAC key: the store was replaced, or the anchor belongs to another broker", path)
	}
	return audit.Head{}, 0, false, fmt.Errorf("audit anchor %s: not a %q file (no valid slot)", path, anchorMagic+" SEQ:HASH MAC")
}

// ErrAnchor marks a store the audit anchor refuses (errors.Is).
var ErrAnchor = errors.New("audit log incomplete")

// checkAnchor compares the store's audit log with the anchor at path.
// adopt accepts a missing anchor on a store that has entries (a new
// replica, an upgrade); the caller then writes one.
func checkAnchor(ctx context.Context, st *store.Store, macKey []byte, path string, adopt bool) (anchored audit.Head, ok bool, err error) {
	head, _, err := st.Head(ctx)
	if err != nil {
		return audit.Head{}, false, fmt.Errorf("audit head: %w", err)
	}
	a, ok, err := readAnchor(path, macKey)
	if err != nil {
		return audit.Head{}, false, fmt.Errorf("%w: %w", ErrAnchor, err)
	}
	if !ok {
		if head.Seq > 0 && !adopt {
			return audit.Head{}, false, fmt.Errorf("%w: audit anchor %s is missing but the store's audit head is entry %d: the anchor was deleted (for a new replica or an upgrade, check the head against a witness, then start once with --adopt-audit-head)", ErrAnchor, path, head.Seq)
		}
		return audit.Head{}, false, nil
	}
	if head.Seq < a.Seq {
		return audit.Head{}, false, fmt.Errorf("%w: the store's audit head is entry %d but the anchor %s records entry %d: audit entries were wiped or the store was replaced by an older copy", ErrAnchor, head.Seq, path, a.Seq)
	}
	if a.Seq == 0 {
		return a, true, nil
	}
	var got *audit.Entry
	if err := st.Entries(ctx, a.Seq, 1, func(e audit.Entry) error { got = &e; return nil }); err != nil {
		return audit.Head{}, false, err
	}
	if got == nil || got.Seq != a.Seq {
		return audit.Head{}, false, fmt.Errorf("%w: the anchor %s records entry %d but the store has no such entry: audit entries were deleted", ErrAnchor, path, a.Seq)
	}
	if !bytes.Equal(got.Hash, a.Hash) {
		return audit.Head{}, false, fmt.Errorf("%w: the store's audit entry %d is not the anchored one (%s): the store was replaced", ErrAnchor, a.Seq, path)
	}
	return a, true, nil
}

// anchor keeps the anchor file at the newest committed head.
type anchor struct {
	path string
	mac  []byte
	mu   sync.Mutex
	f    *os.File
	next int // the slot the next write goes to
	seq  uint64
}

// openAnchor opens (creating it atomically at head when missing) the
// anchor file for writing.
func openAnchor(path string, macKey []byte, head audit.Head) (*anchor, error) {
	a := &anchor{path: path, mac: macKey}
	cur, slot, ok, err := readAnchorSlot(path, macKey)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := atomicfile.WriteBytes(path, encodeAnchor(macKey, head), 0o600); err != nil {
			return nil, fmt.Errorf("audit anchor %s: %w", path, err)
		}
		cur, slot = head, 0
	}
	if a.f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		return nil, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	a.seq, a.next = cur.Seq, 1-slot
	if err := a.advance(head); err != nil {
		a.f.Close()
		return nil, err
	}
	return a, nil
}

// advance rewrites the anchor if h is newer than what it records. It is
// called after the store commit: the anchor is never ahead of the store.
func (a *anchor) advance(h audit.Head) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if h.Seq <= a.seq {
		return nil
	}
	if _, err := a.f.WriteAt(encodeSlot(a.mac, h), int64(a.next*anchorSlot)); err != nil {
		return fmt.Errorf("audit anchor %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit anchor %s: %w", a.path, err)
	}
	a.seq, a.next = h.Seq, 1-a.next
	return nil
}

func (a *anchor) close() {
	if a != nil {
		a.f.Close()
	}
}
