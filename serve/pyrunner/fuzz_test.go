package pyrunner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

func frame(rows, k int, vals ...float32) []byte {
	b := []byte{0}
	b = binary.LittleEndian.AppendUint32(b, uint32(rows))
	b = binary.LittleEndian.AppendUint32(b, uint32(k))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// FuzzReadAnswer: any bytes a runner writes give the rows×k outputs asked
// for, the runner's one-line reason, or an error; never a panic, and never
// an allocation beyond the frame asked for.
func FuzzReadAnswer(f *testing.F) {
	f.Add(frame(2, 2, 1, 2, 3, 4), 2, 2)
	f.Add(frame(1, 3, 1, 2, 3), 2, 2)
	f.Add(append([]byte{1, 5, 0, 0, 0}, "bad\nx"...), 1, 1)
	f.Add([]byte{1, 255, 255, 255, 255}, 1, 1)
	f.Add([]byte{2}, 1, 1)
	f.Add(frame(1, 1), 1, 1)
	f.Fuzz(func(t *testing.T, data []byte, rows, k int) {
		if rows < 1 || rows > 64 || k < 1 || k > 64 {
			return
		}
		y, err := readAnswer(bytes.NewReader(data), rows, k)
		if err != nil {
			var a *answerError
			if errors.As(err, &a) && strings.ContainsAny(a.msg, "\n\r") {
				t.Fatalf("reason %q is not one line", a.msg)
			}
			return
		}
		if len(y) != rows*k {
			t.Fatalf("%d outputs for %d×%d", len(y), rows, k)
		}
	})
}
