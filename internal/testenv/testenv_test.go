package testenv

import (
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records Fatalf/Skipf instead of stopping
// the real test (they panic, as runtime.Goexit would stop the real test).
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(f string, a ...any) {
	r.failed = true
	r.msg = f
	panic(stop{})
}
func (r *recorder) Skipf(f string, a ...any) {
	r.skipped = true
	r.msg = f
	panic(stop{})
}

func run(r *recorder, f func(testing.TB)) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f(r)
}

func TestMustRunFailsUnderCISkipsOtherwise(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
	}{{"true", true}, {"", false}, {"1", false}, {"false", false}} {
		t.Setenv("CI", tc.ci)
		if InCI() != tc.wantFail {
			t.Errorf("CI=%q: InCI() = %v", tc.ci, InCI())
		}
		r := &recorder{}
		run(r, func(tb testing.TB) { MustRun(tb, "need %s", "x") })
		if r.failed != tc.wantFail || r.skipped == tc.wantFail {
			t.Errorf("CI=%q: failed=%v skipped=%v, want failed=%v", tc.ci, r.failed, r.skipped, tc.wantFail)
		}
		if tc.wantFail && r.msg != "CI=true: need %s" {
			t.Errorf("CI=true message format %q", r.msg)
		}
	}
}

func TestEventually(t *testing.T) {
	var n atomic.Int32
	Eventually(t, 5*time.Second, "counter reaches 3", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 {
		t.Errorf("cond called %d times, want 3", n.Load())
	}

	r := &recorder{}
	start := time.Now()
	run(r, func(tb testing.TB) { Eventually(tb, 30*time.Millisecond, "never", func() bool { return false }) })
	if !r.failed {
		t.Error("Eventually with a false condition did not fail")
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("failed after %v, before the 30ms deadline", el)
	}
	if WaitFor(0, func() bool { return false }) {
		t.Error("WaitFor(0, false) = true")
	}
	if !WaitFor(0, func() bool { return true }) {
		t.Error("WaitFor(0, true) = false")
	}
}
