package psi

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Set is one party's ID set, ready for a session: normalised, deduplicated
// and stored in a temporary file in an order given by a fresh secret key,
// so the order the peer sees the blinded IDs in says nothing about the
// input file's order. Close removes it.
type Set struct {
	f *os.File
	// Read is the number of IDs in the input, Duplicates how many of them
	// repeated an earlier one (after normalisation) and were dropped; N is
	// the number of distinct IDs.
	Read, Duplicates, N int
}

// PrepareOptions tunes Prepare.
type PrepareOptions struct {
	// TempDir holds spill files (default os.TempDir()).
	TempDir string
	// MemoryBudget bounds the bytes of IDs sorted in memory before spilling
	// (default 64 MiB).
	MemoryBudget int
	Logger       *slog.Logger
	// Rand is the source of the ordering key (default crypto/rand).
	Rand io.Reader
}

// maxSetSize bounds a set: record indices are uint32.
const maxSetSize = 1<<32 - 1

// Prepare reads an ID file (see IDReader) from r and builds its Set.
func Prepare(r io.Reader, name string, o PrepareOptions) (*Set, error) {
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = 64 << 20
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var key [32]byte
	if _, err := io.ReadFull(o.Rand, key[:]); err != nil {
		return nil, fmt.Errorf("psi: ordering key: %w", err)
	}
	sorter := newExtSorter(o.TempDir, o.MemoryBudget)
	defer sorter.close()
	mac := hmac.New(sha256.New, key[:])
	var sum [32]byte
	rd := NewIDReader(r, name)
	s := &Set{}
	for {
		id, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		mac.Reset()
		io.WriteString(mac, id)
		var k [16]byte
		copy(k[:], mac.Sum(sum[:0]))
		if err := sorter.add(k, id); err != nil {
			return nil, err
		}
		s.Read++
		if s.Read%1_000_000 == 0 {
			log.Info("psi: reading IDs", "file", name, "read", s.Read, "spill_runs", len(sorter.runs))
		}
	}
	f, err := os.CreateTemp(o.TempDir, "psi-set-*")
	if err != nil {
		return nil, fmt.Errorf("psi: set file: %w", err)
	}
	os.Remove(f.Name())
	w := bufio.NewWriterSize(f, 1<<20)
	var prev keyed
	var hdr [binary.MaxVarintLen64]byte
	err = sorter.each(func(k keyed) error {
		if s.N > 0 && k == prev {
			s.Duplicates++
			return nil
		}
		prev = k
		if s.N == maxSetSize {
			return fmt.Errorf("ids %s: more than %d distinct IDs", name, maxSetSize)
		}
		s.N++
		w.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(k.id)))])
		_, err := w.WriteString(k.id)
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("psi: set file: %w", err)
	}
	s.f = f
	if s.Duplicates > 0 {
		log.Warn("psi: duplicate IDs dropped", "file", name, "duplicates", s.Duplicates, "distinct", s.N)
	}
	log.Info("psi: ID set ready", "file", name, "read", s.Read, "distinct", s.N, "duplicates", s.Duplicates)
	return s, nil
}

// PrepareFile is Prepare on the file at path.
func PrepareFile(path string, o PrepareOptions) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ids: %w", err)
	}
	defer f.Close()
	return Prepare(f, path, o)
}

// Close removes the set's temporary file.
func (s *Set) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// setReader reads a Set's IDs in order, from the start.
type setReader struct {
	r *bufio.Reader
}

func (s *Set) reader() (*setReader, error) {
	if s.f == nil {
		return nil, errors.New("psi: set closed")
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("psi: set file: %w", err)
	}
	return &setReader{r: bufio.NewReaderSize(s.f, 1<<20)}, nil
}

// next returns up to n IDs appended to dst[:0]; an empty result means the end.
func (sr *setReader) next(dst []string, n int) ([]string, error) {
	dst = dst[:0]
	for len(dst) < n {
		l, err := binary.ReadUvarint(sr.r)
		if errors.Is(err, io.EOF) {
			return dst, nil
		}
		if err != nil || l > 4*MaxIDLen {
			return nil, errors.New("psi: set file corrupt")
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(sr.r, b); err != nil {
			return nil, fmt.Errorf("psi: set file truncated: %w", err)
		}
		dst = append(dst, string(b))
	}
	return dst, nil
}
