package protocol

import (
	"io"

	"github.com/teeml/teeml/fl/scheduler"
)

// Checkpoint is the durable state of a federation after a completed round
// (see scheduler.Checkpoint). The Aggregator hands one to
// AggregatorConfig.Commit after every round, before any collaborator can
// see that round's result, and takes one back in AggregatorConfig.Resume.
type Checkpoint = scheduler.Checkpoint

// EncodeCheckpoint writes c in the checkpoint file format.
func EncodeCheckpoint(w io.Writer, c *Checkpoint) error { return scheduler.EncodeCheckpoint(w, c) }

// DecodeCheckpoint reads a checkpoint file and checks its digest and
// consistency. Every error is one line starting "checkpoint: ".
func DecodeCheckpoint(r io.Reader) (*Checkpoint, error) { return scheduler.DecodeCheckpoint(r) }

// WriteCheckpoint writes c to path durably and atomically (see
// scheduler.WriteCheckpoint); the file gets mode 0600.
func WriteCheckpoint(path string, c *Checkpoint) error { return scheduler.WriteCheckpoint(path, c) }

// ReadCheckpoint reads the checkpoint at path, which must belong to the
// plan with hash planHash. A missing file is an error wrapping
// os.ErrNotExist.
func ReadCheckpoint(path, planHash string) (*Checkpoint, error) {
	return scheduler.ReadCheckpoint(path, planHash)
}

// ParseCheckpoint decodes b, the content of the checkpoint file path, which
// must belong to the plan with hash planHash (see scheduler.ParseCheckpoint).
func ParseCheckpoint(path string, b []byte, planHash string) (*Checkpoint, error) {
	return scheduler.ParseCheckpoint(path, b, planHash)
}
