package ml

import (
	"fmt"
	"reflect"
	"runtime"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
)

// backendConfig forces the Go backend to run the ops of a graph one at a
// time (each op is still parallelised internally: matmuls split their work
// over the worker pool). In compute v0.1.2 the default "parallel ops" mode
// runs every op as a pool task, and a matmul op then calls Pool.Saturate,
// which waits for a free worker slot while holding one: with several matmuls
// in flight (the backward pass has many) every slot can end up held by a
// waiting matmul and execution deadlocks (we hit this as a hung MNIST run
// with 0% CPU). Sequential op scheduling avoids it.
const backendConfig = "ops_sequential"

// All models of the process share one GoMLX pure-Go backend ("go", from
// github.com/gomlx/compute/gobackend; no cgo, no XLA).
var (
	backendMu   sync.Mutex
	backendInst compute.Backend
	threads     int // 0 = default (GOMAXPROCS)
)

// SetThreads sets the number of threads used for compute, the analogue of
// torch.set_num_threads: it sets runtime.GOMAXPROCS(n) (the number of OS
// threads running Go code at once, which also caps the backend's matmul
// workers) and the Go backend's worker parallelism to n. n ≤ 0 restores the
// defaults: the runtime's GOMAXPROCS (runtime.SetDefaultGOMAXPROCS: CPU
// count, cgroup limit or the GOMAXPROCS environment variable) and the
// backend's 2×GOMAXPROCS worker goroutines. It affects the whole process;
// call it before training, not while a model is executing.
func SetThreads(n int) {
	backendMu.Lock()
	defer backendMu.Unlock()
	if n > 0 {
		runtime.GOMAXPROCS(n)
	} else {
		runtime.SetDefaultGOMAXPROCS()
	}
	threads = max(n, 0)
	if backendInst != nil {
		setParallelism(backendInst, n)
	}
}

// Threads reports the effective number of compute threads: the value set by
// SetThreads, or GOMAXPROCS.
func Threads() int {
	backendMu.Lock()
	defer backendMu.Unlock()
	if threads > 0 {
		return min(threads, runtime.GOMAXPROCS(0))
	}
	return runtime.GOMAXPROCS(0)
}

// Backend returns the shared GoMLX backend, creating it on first use.
func Backend() (compute.Backend, error) {
	backendMu.Lock()
	defer backendMu.Unlock()
	if backendInst != nil {
		return backendInst, nil
	}
	b, err := gobackend.New(backendConfig)
	if err != nil {
		return nil, fmt.Errorf("ml: creating GoMLX go backend: %w", err)
	}
	if threads > 0 && !setParallelism(b, threads) {
		// Fallback through the documented config string (which prints a line on stdout).
		b, err = gobackend.New(fmt.Sprintf("%s,parallelism=%d", backendConfig, threads))
		if err != nil {
			return nil, fmt.Errorf("ml: creating GoMLX go backend: %w", err)
		}
	}
	backendInst = b
	return b, nil
}

// BackendDescription describes the shared backend (name and parallelism).
func BackendDescription() string {
	b, err := Backend()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s, %d threads", b.Description(), Threads())
}

// setParallelism sets the worker pool size of a gobackend backend without
// going through its config string (which prints to stdout). It reaches the
// exported Workers field of the backend (compute v0.1.2 layout) by reflection
// and reports whether it succeeded.
func setParallelism(b compute.Backend, n int) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0) // the backend's own default
	}
	v := reflect.ValueOf(b)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return false
	}
	w := v.Elem().FieldByName("Workers")
	if !w.IsValid() || w.IsNil() {
		return false
	}
	m := w.MethodByName("SetMaxParallelism")
	if !m.IsValid() {
		return false
	}
	m.Call([]reflect.Value{reflect.ValueOf(n)})
	return true
}
