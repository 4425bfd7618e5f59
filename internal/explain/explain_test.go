package explain

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestErrorf(t *testing.T) {
	_, cause := os.Open(filepath.Join(t.TempDir(), "missing"))
	err := fmt.Errorf("outer: %w", Errorf(cause, "%s does not exist (create it first)", "x"))
	if got, want := err.Error(), "outer: x does not exist (create it first)"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("not fs.ErrNotExist through the explanation")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe != cause {
		t.Fatalf("errors.As found %v, want the cause", pe)
	}
	sentinel := errors.New("sentinel")
	if err := Errorf(sentinel, "refused"); !errors.Is(err, sentinel) || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%v: want the sentinel only", err)
	}
}
