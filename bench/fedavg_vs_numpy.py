#!/usr/bin/python3
"""numpy side of bench/fedavg_vs_numpy.sh.

Times the FedAvg weighted mean of K client updates of P float32 parameters
(weights = NumExamples 100, 200, ..., K*100, as in the Go benchmark) in
several numpy formulations and prints one JSON line per variant with the best
time over --reps runs (after one warm-up) and GB/s of input read (K*P*4
bytes). It also reports each variant's largest absolute error against the
exact (float64) weighted mean, and the error of that mean rounded once to
float32 ("rounded_exact"), which is what the Go kernel's float64 accumulation
yields (to within one float32 ulp).

Variants:
  tensordot_prestacked  np.tensordot(w32, stack, axes=1) on a (K, P) float32
                        array already in memory: one BLAS sgemv, the fastest
                        numpy way (float32 accumulation).
  average_prestacked    np.average(stack, axis=0, weights=examples): the
                        obvious spelling; float64 weights upcast the stack.
  stack_tensordot       np.stack(list) then tensordot: the fastest way when
                        the updates arrive as K separate arrays (as in Go).
  axpy_loop             out = w0*u0; out += wk*uk with preallocated buffers,
                        on K separate arrays.
  flower_aggregate      Flower's aggregate(): [u * n_k], reduce(np.add) / N.
  copy_prestacked       np.copyto of the stack into a preallocated array: a
                        numpy memory-bandwidth reference (read + write).

`fedavg_vs_numpy.py report GO_OUT NP_OUT BYTES` prints the combined table.
"""
import argparse
import functools
import json
import re
import sys
import time

import numpy as np


def best_time(fn, reps):
    fn()  # warm-up (page faults of fresh outputs, BLAS thread start-up)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def report(go_out, np_out, in_bytes):
    """Prints the side-by-side table from `go test -bench` output and this
    script's JSON lines (the best Go time over all but the first repetition)."""
    go = {}
    for line in open(go_out):
        m = re.match(r"Benchmark(\S+?)(-\d+)?\s+\d+\s+(\d+(?:\.\d+)?) ns/op", line)
        if m:
            go.setdefault(m.group(1), []).append(float(m.group(3)) / 1e6)
    rows = [("go " + name, min(ts[1:] or ts)) for name, ts in go.items()]
    npv = [json.loads(line) for line in open(np_out)]
    rounded = next(v["max_abs_err"] for v in npv if v["variant"] == "rounded_exact")
    rows += [("numpy " + v["variant"], v["ms"]) for v in npv if "ms" in v]
    err = {"numpy " + v["variant"]: f"{v['max_abs_err']:.2e}" for v in npv if "max_abs_err" in v and "ms" in v}
    for name in ("go FedAvg8x10M", "go FedAvg8x10MNormBound", "go WeightedMean8x10M"):
        err[name] = f"~{rounded:.2e}"
    print(f"\n{'variant':34s} {'best ms':>9s} {'GB/s':>7s}  {'max abs err':>11s}")
    for name, ms in rows:
        print(f"{name:34s} {ms:9.2f} {in_bytes / ms / 1e6:7.2f}  {err.get(name, ''):>11s}")
    print(f"(max abs err against the exact mean; the exact mean rounded once to float32 is off by {rounded:.2e},")
    print(" which the Go kernel's float64 accumulation matches to within one float32 ulp)\n")
    ms = dict(rows)
    g = ms["go FedAvg8x10M"]
    for v in ("tensordot_prestacked", "stack_tensordot", "axpy_loop", "flower_aggregate", "average_prestacked"):
        print(f"go FedAvg speed-up over numpy {v:22s} {ms['numpy ' + v] / g:6.2f}x")
    print(f"go FedAvg GB/s = {ms['go MemSum8x10M'] / g * 100:.0f}% of go MemSum (read bandwidth), "
          f"{ms['go MemCopy8x10M'] / g * 100:.0f}% of go MemCopy (read + write)")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--params", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    k, p = args.clients, args.params

    rng = np.random.default_rng(1)
    stack = rng.standard_normal((k, p), dtype=np.float32)
    updates = [np.ascontiguousarray(stack[i].copy()) for i in range(k)]
    examples = np.arange(1, k + 1, dtype=np.float64) * 100
    total = examples.sum()
    w32 = (examples / total).astype(np.float32)
    out = np.empty(p, dtype=np.float32)
    tmp = np.empty(p, dtype=np.float32)
    copy_dst = np.empty_like(stack)

    def axpy_loop():
        np.multiply(updates[0], w32[0], out=out)
        for u, w in zip(updates[1:], w32[1:]):
            np.multiply(u, w, out=tmp)
            np.add(out, tmp, out=out)
        return out

    def flower_aggregate():
        # flwr.server.strategy.aggregate.aggregate, on one layer
        weighted = [u * n for u, n in zip(updates, examples.astype(np.float32))]
        return functools.reduce(np.add, weighted) / total

    variants = {
        "tensordot_prestacked": lambda: np.tensordot(w32, stack, axes=1),
        "average_prestacked": lambda: np.average(stack, axis=0, weights=examples),
        "stack_tensordot": lambda: np.tensordot(w32, np.stack(updates), axes=1),
        "axpy_loop": axpy_loop,
        "flower_aggregate": flower_aggregate,
    }

    ref = np.tensordot(examples, stack.astype(np.float64), axes=1) / total
    rounded_err = float(np.max(np.abs(ref.astype(np.float32).astype(np.float64) - ref)))
    print(json.dumps({"variant": "rounded_exact", "max_abs_err": rounded_err}), flush=True)
    in_bytes = k * p * 4
    for name, fn in variants.items():
        t = best_time(fn, args.reps)
        got = np.asarray(fn(), dtype=np.float64)
        err = float(np.max(np.abs(got - ref)))
        print(json.dumps({"variant": name, "ms": round(t * 1e3, 2), "gb_per_s": round(in_bytes / t / 1e9, 3),
                          "max_abs_err": err}), flush=True)
    t = best_time(lambda: np.copyto(copy_dst, stack), args.reps)
    print(json.dumps({"variant": "copy_prestacked", "ms": round(t * 1e3, 2), "gb_per_s": round(in_bytes / t / 1e9, 3)}),
          flush=True)


if __name__ == "__main__":
    main()
