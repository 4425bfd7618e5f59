package rootkey

import (
	"errors"
	"fmt"
	"testing"

	"github.com/teeml/teeml/internal/explain"
)

// TestRefusalsKeepMessage: a refusal keeps its own message and is its
// sentinel (only its sentinel) through further wrapping. The real paths
// are covered by TestFileWrongKey, TestFileCreateNeverReplaces and, with
// SoftHSM2, TestPKCS11OpenErrors (ErrWrongPIN).
func TestRefusalsKeepMessage(t *testing.T) {
	for _, target := range []error{ErrWrongKey, ErrKeyExists, ErrWrongPIN} {
		err := fmt.Errorf("kms: %w", explain.Errorf(target, "rootkey: token %q: refused", "t"))
		if got, want := err.Error(), `kms: rootkey: token "t": refused`; got != want {
			t.Errorf("message %q, want %q", got, want)
		}
		for _, s := range []error{ErrWrongKey, ErrKeyExists, ErrWrongPIN, ErrAuthentication} {
			if errors.Is(err, s) != (s == target) {
				t.Errorf("explain.Errorf(%v): errors.Is(%v) = %v", target, s, !(s == target))
			}
		}
	}
}
