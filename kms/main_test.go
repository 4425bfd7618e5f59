package kms

import (
	"log/slog"
	"os"
	"testing"

	"github.com/teeml/teeml/internal/testlog"
)

// TestMain silences the default logger: pki's CA judges the simulated CSRs
// with attest/policy, which warns about simulation on slog.Default.
func TestMain(m *testing.M) {
	slog.SetDefault(testlog.Discard())
	os.Exit(m.Run())
}
