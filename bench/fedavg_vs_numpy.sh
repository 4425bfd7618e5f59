#!/usr/bin/env bash
# FedAvg aggregation throughput, teeml (fl/strategy, Go) vs numpy (Debian
# python3-numpy with OpenBLAS), in one run on this machine: the
# examples-weighted mean of 8 client updates of 10M float32 parameters
# (320 MB of input), plus memory-bandwidth references over the same bytes.
#
# Go side (go test benchmarks in fl/strategy):
#   FedAvg8x10M           FedAvg.AggregateFit: validation (ids, examples,
#                         names/shapes; NaN/Inf detected from the result),
#                         float64-accumulated weighted mean, new output.
#   FedAvg8x10MNormBound  the same with Validator.MaxUpdateNorm (one more pass).
#   WeightedMean8x10M     the bare kernel into a reused output.
#   MemSum8x10M           read the same 8 arrays once (sum): read bandwidth.
#   MemCopy8x10M          copy the same 8 arrays: read + write bandwidth.
# numpy side: bench/fedavg_vs_numpy.py (variants described there).
#
# Both sides use the same thread count (GOMAXPROCS via -cpu; OpenBLAS /
# OpenMP threads) and report the best of `reps` timed runs after a warm-up.
# GB/s is input bytes read (8 × 10M × 4) per second. On a shared machine run
# it when idle: the load average is printed first.
#
# usage: bench/fedavg_vs_numpy.sh [threads] [reps]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
reps=${2:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), threads=$threads, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(go version), numpy $(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')"

# -benchtime 1x -count reps+1: one timed run per repetition; the first
# (output first touch, GC sizing) is dropped, the best of the rest reported.
go test -run '^$' -bench '^Benchmark(FedAvg8x10M|FedAvg8x10MNormBound|WeightedMean8x10M|MemSum8x10M|MemCopy8x10M)$' \
	-benchtime 1x -count $((reps + 1)) -cpu "$threads" ./fl/strategy/ >"$tmp/go.out"
/usr/bin/python3 bench/fedavg_vs_numpy.py --clients 8 --params 10000000 --reps "$reps" >"$tmp/np.out"
/usr/bin/python3 bench/fedavg_vs_numpy.py report "$tmp/go.out" "$tmp/np.out" $((8 * 10000000 * 4))
