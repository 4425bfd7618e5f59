package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/teeml/teeml/internal/atomicfile"
)

// FileName is the metrics file's name in a run directory.
const FileName = "metrics.jsonl"

// MaxLineBytes bounds one line of a metrics file (reader and writer).
const MaxLineBytes = 1 << 20

// Recorder receives Records. Implementations are safe for concurrent use.
type Recorder interface {
	// Record appends r (V and Time are filled in when zero).
	Record(r Record) error
	// Sync makes the records so far durable (called at round boundaries).
	Sync() error
}

// Nop is a Recorder that drops everything.
type Nop struct{}

func (Nop) Record(Record) error { return nil }
func (Nop) Sync() error         { return nil }

// JSONL is the metrics file writer: one JSON Record per line.
//
// Crash safety: the file is opened with O_APPEND and every Record is one
// write(2) of one complete line, so a crash can at worst leave a torn last
// line; Sync (fsync) is called at every round boundary. OpenJSONL cuts a
// torn tail off before appending, with a warning, and ReadFile skips one.
//
// Resume rule: an aggregator that restarts from a checkpoint of round N
// (the last completed round) calls Resume(N) before opening round N+1.
// Every record of a round > N — written before the crash for a round that
// will now be run again — is dropped (the file is rewritten atomically),
// then a "resume" record is appended. So no round's records appear twice,
// and records of round 0 (attestation before the first round) are kept.
type JSONL struct {
	path string
	log  *slog.Logger

	mu sync.Mutex
	f  *os.File
}

// OpenJSONL opens (creating it and its directory if needed) the metrics
// file at path for appending, truncating a torn last line.
func OpenJSONL(path string, log *slog.Logger) (*JSONL, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	j := &JSONL{path: path, log: log}
	if err := j.open(); err != nil {
		return nil, err
	}
	return j, nil
}

// Path is the file's path.
func (j *JSONL) Path() string { return j.path }

func (j *JSONL) open() error {
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := repairTail(f, j.path, j.log); err != nil {
		f.Close()
		return err
	}
	j.f = f
	return nil
}

// repairTail truncates f after its last newline.
func repairTail(f *os.File, path string, log *slog.Logger) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	// Scan backwards in blocks for the last '\n'.
	buf := make([]byte, 64<<10)
	end := size
	keep := int64(0)
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("metrics: %s: %w", path, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if keep == size {
		return nil
	}
	log.Warn("metrics: truncating a torn last line (written when the process stopped mid-write)",
		"file", path, "dropped_bytes", size-keep)
	if err := f.Truncate(keep); err != nil {
		return fmt.Errorf("metrics: %s: truncate torn tail: %w", path, err)
	}
	return f.Sync()
}

// Record implements Recorder.
func (j *JSONL) Record(r Record) error {
	b, err := encode(r)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.writeLocked(b)
}

// encode renders r as one line.
func encode(r Record) ([]byte, error) {
	if r.V == 0 {
		r.V = Version
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	r.Metrics = finite(r.Metrics)
	r.Seconds = finiteOr0(r.Seconds)
	b, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("metrics: encode record: %w", err)
	}
	b = append(b, '\n')
	if len(b) > MaxLineBytes {
		return nil, fmt.Errorf("metrics: record of %d bytes exceeds %d", len(b), MaxLineBytes)
	}
	return b, nil
}

// writeLocked appends one encoded line; j.mu held.
func (j *JSONL) writeLocked(b []byte) error {
	if j.f == nil {
		return fmt.Errorf("metrics: %s is closed", j.path)
	}
	// One write of one whole line: with O_APPEND it lands at the end
	// in one piece unless the process dies inside the call.
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("metrics: %s: %w", j.path, err)
	}
	return nil
}

// Sync implements Recorder.
func (j *JSONL) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("metrics: %s: %w", j.path, err)
	}
	return nil
}

// Resume applies the resume rule (see JSONL) for lastCompleted, the last
// round whose aggregate is checkpointed (0 for a run that starts again
// from round 1): records of later rounds are dropped and, unless the file
// was empty, a "resume" record is appended. It returns how many records
// were dropped.
func (j *JSONL) Resume(lastCompleted int) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return 0, fmt.Errorf("metrics: %s is closed", j.path)
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("metrics: %s: %w", j.path, err)
	}
	var kept bytes.Buffer
	dropped, lines := 0, 0
	sc := bufio.NewScanner(j.f)
	sc.Buffer(make([]byte, 64<<10), MaxLineBytes+1)
	for sc.Scan() {
		line := sc.Bytes()
		lines++
		var r struct {
			Round *int `json:"round"`
		}
		// Lines that do not parse are kept as they are: the reader
		// reports them with their line number.
		if json.Unmarshal(line, &r) == nil && r.Round != nil && *r.Round > lastCompleted {
			dropped++
			continue
		}
		kept.Write(line)
		kept.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("metrics: %s: %w", j.path, err)
	}
	if dropped > 0 {
		if err := atomicfile.WriteBytes(j.path, kept.Bytes(), 0o644); err != nil {
			return 0, fmt.Errorf("metrics: %s: %w", j.path, err)
		}
		// The old descriptor points at the replaced inode.
		j.f.Close()
		j.f = nil
		if err := j.open(); err != nil {
			return 0, err
		}
		j.log.Warn("metrics: resumed run: dropped records of rounds after the last completed one",
			"file", j.path, "last_completed_round", lastCompleted, "dropped", dropped)
	}
	if lines == 0 {
		return 0, nil
	}
	b, err := encode(Record{Round: lastCompleted, Participant: Aggregator, Phase: PhaseResume,
		Metrics: map[string]float64{"dropped_records": float64(dropped)}})
	if err != nil {
		return dropped, err
	}
	if err := j.writeLocked(b); err != nil {
		return dropped, err
	}
	if err := j.f.Sync(); err != nil {
		return dropped, fmt.Errorf("metrics: %s: %w", j.path, err)
	}
	return dropped, nil
}

// Close syncs and closes the file.
func (j *JSONL) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	return err
}

// ReadFile reads a metrics file. An incomplete last line (no newline: the
// writer died mid-line) is skipped and reported in warnings; any other bad
// line is an error naming the file and line. An empty file is an error.
func ReadFile(path string) ([]Record, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("metrics: %s: no such file (is this a run directory of an aggregator?)", path)
		}
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads metrics records from r; name is used in messages.
func Parse(r io.Reader, name string) ([]Record, []string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		recs     []Record
		warnings []string
	)
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			if errors.Is(err, errLineTooLong) {
				return nil, nil, fmt.Errorf("metrics: %s: line %d: longer than %d bytes", name, lineNo, MaxLineBytes)
			}
			return nil, nil, fmt.Errorf("metrics: %s: line %d: %w", name, lineNo, err)
		}
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				warnings = append(warnings, fmt.Sprintf("%s: line %d: incomplete last line (%d bytes, no newline) skipped: the writer stopped mid-line", name, lineNo, len(line)))
			}
			break
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec, err := parseRecord(line)
		if err != nil {
			return nil, nil, fmt.Errorf("metrics: %s: line %d: %w", name, lineNo, err)
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return nil, warnings, fmt.Errorf("metrics: %s: no records", name)
	}
	return recs, warnings, nil
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line including its '\n', or the rest of the
// input with io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > MaxLineBytes {
			return nil, errLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return out, err
	}
}

func parseRecord(line []byte) (Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("not a JSON record: %w", err)
	}
	if dec.More() {
		return r, errors.New("more than one JSON value on the line")
	}
	switch {
	case r.V < 1:
		return r, fmt.Errorf("no schema version (\"v\")")
	case r.V > Version:
		return r, fmt.Errorf("schema version %d is newer than this teeml's %d", r.V, Version)
	case r.Phase == "":
		return r, errors.New("no phase")
	case r.Round < 0:
		return r, fmt.Errorf("round %d", r.Round)
	case r.Seconds < 0:
		return r, fmt.Errorf("negative seconds %v", r.Seconds)
	case r.Bytes < 0 || r.BytesIn < 0 || r.BytesOut < 0:
		return r, errors.New("negative bytes")
	}
	return r, nil
}
