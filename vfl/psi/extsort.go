package psi

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// keyed is one record of an external sort: a 16-byte sort key and an ID.
type keyed struct {
	key [16]byte
	id  string
}

func compareKeyed(a, b keyed) int {
	if c := bytes.Compare(a.key[:], b.key[:]); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// recordOverhead approximates the memory of a keyed record besides its ID
// bytes (key, string header, slice slot).
const recordOverhead = 16 + 16 + 8

// extSorter sorts more records than fit in its memory budget: it sorts
// budget-sized runs in memory, spills each to a temporary file and merges
// the runs when read. Records are ordered by key, then ID.
type extSorter struct {
	dir    string
	budget int
	buf    []keyed
	bytes  int
	runs   []*os.File
}

func newExtSorter(dir string, budget int) *extSorter {
	return &extSorter{dir: dir, budget: budget}
}

func (s *extSorter) add(key [16]byte, id string) error {
	s.buf = append(s.buf, keyed{key, id})
	s.bytes += len(id) + recordOverhead
	if s.bytes >= s.budget {
		return s.spill()
	}
	return nil
}

// spill writes the sorted buffer as a run: per record uvarint(len(id)),
// key, id.
func (s *extSorter) spill() error {
	slices.SortFunc(s.buf, compareKeyed)
	f, err := os.CreateTemp(s.dir, "psi-run-*")
	if err != nil {
		return fmt.Errorf("psi: spill file: %w", err)
	}
	// Unlinked at once: the open descriptor keeps the data, and nothing is
	// left behind if the process dies.
	os.Remove(f.Name())
	w := bufio.NewWriterSize(f, 1<<20)
	var hdr [binary.MaxVarintLen64]byte
	for _, r := range s.buf {
		w.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(r.id)))])
		w.Write(r.key[:])
		w.WriteString(r.id)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("psi: spill file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("psi: spill file: %w", err)
	}
	s.runs = append(s.runs, f)
	clear(s.buf)
	s.buf, s.bytes = s.buf[:0], 0
	return nil
}

// close releases the spill files.
func (s *extSorter) close() {
	for _, f := range s.runs {
		f.Close()
	}
	s.runs, s.buf = nil, nil
}

// each calls fn for every record in order. It may be called once.
func (s *extSorter) each(fn func(keyed) error) error {
	defer s.close()
	if len(s.runs) == 0 {
		slices.SortFunc(s.buf, compareKeyed)
		for _, r := range s.buf {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(s.buf) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	h := make(runHeap, 0, len(s.runs))
	for _, f := range s.runs {
		rr := &runReader{r: bufio.NewReaderSize(f, 256<<10)}
		ok, err := rr.next()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, rr)
		}
	}
	heap.Init(&h)
	for len(h) > 0 {
		top := h[0]
		if err := fn(top.cur); err != nil {
			return err
		}
		ok, err := top.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	return nil
}

type runReader struct {
	r   *bufio.Reader
	cur keyed
}

func (rr *runReader) next() (bool, error) {
	n, err := binary.ReadUvarint(rr.r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil || n > 4*MaxIDLen {
		return false, fmt.Errorf("psi: spill file corrupt")
	}
	buf := make([]byte, 16+n)
	if _, err := io.ReadFull(rr.r, buf); err != nil {
		return false, fmt.Errorf("psi: spill file truncated: %w", err)
	}
	copy(rr.cur.key[:], buf[:16])
	rr.cur.id = string(buf[16:])
	return true, nil
}

type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return compareKeyed(h[i].cur, h[j].cur) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
