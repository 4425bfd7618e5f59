#!/bin/sh
# Sealed-file throughput against raw AES-256-GCM (crypto/cipher) in the same
# run: BenchmarkSealedVsRawPaired times raw and sealed alternately inside each
# iteration and reports the median paired ratio; -count repeats it and this
# script prints the median over the repeats.
# Usage: bench/sealed_bench.sh [count] [iterations]   (from the repository root)
set -eu
count=${1:-3}
iters=${2:-30}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
go test ./sealed/ -run '^$' -bench 'BenchmarkSealedVsRawPaired' -benchtime "${iters}x" -count "$count" | tee "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"BenchmarkSealedVsRawPaired/(\w+)/(\w+)-\d+\s+\d+\s+\d+ ns/op\s+(.*)", line)
    if not m:
        continue
    metrics = {k: float(v) for v, k in re.findall(r"([\d.]+) (\S+)", m.group(3))}
    rows.setdefault((m.group(1), m.group(2)), []).append(metrics)
print("\n| op | size | raw AES-GCM in memory MB/s | raw AES-GCM streaming MB/s | sealed MB/s | sealed / raw in memory | sealed / raw streaming |")
print("|---|---|---|---|---|---|---|")
for (op, size), ms in sorted(rows.items(), key=lambda kv: (kv[0][0] != "encrypt", int(kv[0][1][:-3]))):
    med = lambda k: statistics.median(m[k] for m in ms)
    print(f"| {op} | {size} | {med('raw-mem-MB/s'):.0f} | {med('raw-stream-MB/s'):.0f} | {med('sealed-MB/s'):.0f} | "
          f"**{med('sealed/raw-mem'):.2f}** | **{med('sealed/raw-stream'):.2f}** |")
PY
