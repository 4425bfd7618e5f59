// Package testenv holds the rules tests share about their environment.
//
// MustRun is the "skip locally, fail under CI" rule: a test whose optional
// system package, data set or service is missing skips with a message on a
// developer's machine, and fails under CI=true, where .ci/run installs
// everything, so a broken CI set-up can never turn into silently skipped
// tests. Eventually waits for a condition with a deadline, for tests that
// would otherwise sleep to synchronise.
package testenv

import (
	"os"
	"testing"
	"time"
)

// InCI reports whether tests run under CI (CI=true), where every optional
// dependency must be present.
func InCI() bool { return os.Getenv("CI") == "true" }

// MustRun reports that something the test needs is missing: under CI=true
// it fails the test (t.Fatalf, prefixed "CI=true: "), otherwise it skips it
// (t.Skipf). Either way the test stops here.
func MustRun(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: "+format, args...)
		return
	}
	t.Skipf(format, args...)
}

// Eventually polls cond until it returns true or timeout passes, and fails
// the test (t.Fatalf with what) at the deadline. It polls every 5 ms at
// first, backing off to 50 ms.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !WaitFor(timeout, cond) {
		t.Fatalf("not after %v: %s", timeout, what)
	}
}

// WaitFor polls cond until it returns true (then true) or timeout passes
// (then false, after one last try). For callers that cannot fail the test
// from their goroutine, or that handle the timeout themselves.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	poll := 5 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		wait := min(poll, time.Until(deadline))
		if wait > 0 {
			timer := time.NewTimer(wait)
			<-timer.C
		}
		poll = min(2*poll, 50*time.Millisecond)
	}
}
