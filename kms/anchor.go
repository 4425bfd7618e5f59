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
// kept outside the store, in a small file the broker rewrites (atomically,
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
//	teeml-kms-audit-anchor v1 SEQ:HASH MAC
const anchorMagic = "teeml-kms-audit-anchor v1"

// maxAnchorSize bounds what ReadAnchor reads (the line is about 200 bytes).
const maxAnchorSize = 4096

func anchorMAC(macKey []byte, h audit.Head) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte("teeml-kms/audit-anchor/v1"))
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], h.Seq)
	m.Write(s[:])
	m.Write(h.Hash)
	return m.Sum(nil)
}

func encodeAnchor(macKey []byte, h audit.Head) []byte {
	return fmt.Appendf(nil, "%s %s %s\n", anchorMagic, h, hex.EncodeToString(anchorMAC(macKey, h)))
}

// readAnchor reads and authenticates the anchor at path; ok is false when
// the file does not exist.
func readAnchor(path string, macKey []byte) (h audit.Head, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return audit.Head{}, false, nil
	}
	if err != nil {
		return audit.Head{}, false, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxAnchorSize+1))
	if err != nil {
		return audit.Head{}, false, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	if len(buf) > maxAnchorSize {
		return audit.Head{}, false, fmt.Errorf("audit anchor %s: larger than %d bytes: not an anchor", path, maxAnchorSize)
	}
	line, found := strings.CutSuffix(string(buf), "\n")
	rest, magic := strings.CutPrefix(line, anchorMagic+" ")
	fields := strings.Fields(rest)
	if !found || !magic || len(fields) != 2 {
		return audit.Head{}, false, fmt.Errorf("audit anchor %s: not a %q line", path, anchorMagic+" SEQ:HASH MAC")
	}
	if h, err = audit.ParseHead(fields[0]); err != nil {
		return audit.Head{}, false, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	mac, err := hex.DecodeString(fields[1])
	if err != nil || !hmac.Equal(mac, anchorMAC(macKey, h)) {
		return audit.Head{}, false, fmt.Errorf("audit anchor %s (entry %d) is not authenticated by this store's audit MAC key: the store was replaced, or the anchor belongs to another broker", path, h.Seq)
	}
	return h, true, nil
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
	path   string
	macKey []byte
	mu     sync.Mutex
	seq    uint64
	wrote  bool
}

// advance rewrites the anchor if h is newer than what it records. It is
// called after the store commit: the anchor is never ahead of the store.
func (a *anchor) advance(h audit.Head) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wrote && h.Seq <= a.seq {
		return nil
	}
	if err := atomicfile.WriteBytes(a.path, encodeAnchor(a.macKey, h), 0o600); err != nil {
		return fmt.Errorf("audit anchor %s: %w", a.path, err)
	}
	a.seq, a.wrote = h.Seq, true
	return nil
}
