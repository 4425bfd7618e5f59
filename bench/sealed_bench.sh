#!/bin/sh
# Sealed-file throughput against raw AES-256-GCM (crypto/cipher) in the same
# run: BenchmarkSealedVsRawPaired times raw and sealed alternately inside each
# iteration and reports the median paired ratio; -count repeats it and this
# script prints the median over the repeats. With a git revision it also
# builds that revision's benchmark and alternates the two binaries, so
# before/after are measured under the same load.
# Usage: bench/sealed_bench.sh [count] [iterations] [base-revision]   (from the repository root)
set -eu
count=${1:-3}
iters=${2:-30}
base=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/out
go test -c -o "$work/after.test" ./sealed/
if [ -n "$base" ]; then
  mkdir "$work/base"
  git archive "$base" | tar -x -C "$work/base"
  (cd "$work/base" && go test -c -o "$work/before.test" ./sealed/)
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$count"); do
  (cd sealed && "$work/after.test" -test.run '^$' -test.bench 'BenchmarkSealedVsRawPaired' -test.benchtime "${iters}x") | grep '^Benchmark' | sed 's/^/after /' | tee -a "$out"
  if [ -n "$base" ]; then
    (cd "$work/base/sealed" && "$work/before.test" -test.run '^$' -test.bench 'BenchmarkSealedVsRawPaired' -test.benchtime "${iters}x") | grep '^Benchmark' | sed 's/^/before /' | tee -a "$out"
  fi
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) BenchmarkSealedVsRawPaired/(\w+)/(\w+)-\d+\s+\d+\s+\d+ ns/op\s+(.*)", line)
    if not m:
        continue
    metrics = {k: float(v) for v, k in re.findall(r"([\d.]+) (\S+)", m.group(4))}
    rows.setdefault((m.group(2), m.group(3), m.group(1)), []).append(metrics)
print("\n| build | op | size | raw AES-GCM in memory MB/s | raw AES-GCM streaming MB/s | sealed MB/s | sealed / raw in memory | sealed / raw streaming | ReadFrom path / raw streaming |")
print("|---|---|---|---|---|---|---|---|---|")
for (op, size, who), ms in sorted(rows.items(), key=lambda kv: (kv[0][0] != "encrypt", int(kv[0][1][:-3]), kv[0][2] != "before")):
    med = lambda k: statistics.median(m[k] for m in ms) if all(k in m for m in ms) else float("nan")
    rf = med('sealed-readfrom/raw-stream')
    print(f"| {who} | {op} | {size} | {med('raw-mem-MB/s'):.0f} | {med('raw-stream-MB/s'):.0f} | {med('sealed-MB/s'):.0f} | "
          f"**{med('sealed/raw-mem'):.2f}** | **{med('sealed/raw-stream'):.2f}** | " + ("-" if rf != rf else f"{rf:.2f}") + " |")
PY
