#!/usr/bin/env bash
# Per-core cost of the ECDH-PSI protocol against the physical limit of the
# group, side by side in one run: BenchmarkScalarMult (one constant-time
# ristretto255 scalar multiplication by a secret, the operation every ID
# needs twice) and BenchmarkProtocol (whole sessions, both parties in one
# process over RA-TLS loopback), alternating rounds. With a git revision it
# also builds that revision's test binary and runs its BenchmarkProtocol in
# the same rounds (before/after).
#
#   bench/vfl_psi_paired.sh [rounds] [base-revision]     # default 3, no base
set -euo pipefail
rounds=${1:-3}
base=${2:-}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/after.test" ./vfl/psi/
if [ -n "$base" ]; then
  mkdir "$work/base"
  git archive "$base" | tar -x -C "$work/base"
  (cd "$work/base" && go test -c -o "$work/before.test" ./vfl/psi/)
fi
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$work/out
for r in $(seq "$rounds"); do
  (cd vfl/psi && "$work/after.test" -test.run '^$' -test.bench 'ScalarMult$|Blind$|Reblind$' -test.benchtime 4x -test.cpu 1) | sed "s/^/after $r /" | grep Benchmark | tee -a "$out"
  (cd vfl/psi && "$work/after.test" -test.run '^$' -test.bench 'Protocol' -test.benchtime 2x) 2>/dev/null | sed "s/^/after $r /" | grep Benchmark | tee -a "$out"
  if [ -n "$base" ]; then
    (cd "$work/base/vfl/psi" && "$work/before.test" -test.run '^$' -test.bench 'Protocol' -test.benchtime 2x) 2>/dev/null | sed "s/^/before $r /" | grep Benchmark | tee -a "$out"
  fi
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) (\d+) (Benchmark\S+?)(-\d+)?\s+\d+\s+\d+ ns/op\s+(.*)", line)
    if not m:
        continue
    metrics = {k: float(v) for v, k in re.findall(r"([\d.]+) (\S+)", m.group(5))}
    runs.setdefault((m.group(1), m.group(3)), {}).setdefault(int(m.group(2)), metrics)
def col(who, bench, metric):
    return [runs[(who, bench)][r][metric] for r in sorted(runs.get((who, bench), {}))]
sm = col("after", "BenchmarkScalarMult", "mults/cpu-s")
prot = col("after", "BenchmarkProtocol/n=20000", "ids/cpu-s")
print("\n| round | scalar mults/cpu-s | ceiling IDs/cpu-s (half) | protocol IDs/cpu-s | protocol / ceiling | before IDs/cpu-s | after / before |")
print("|---|---|---|---|---|---|---|")
before = col("before", "BenchmarkProtocol/n=20000", "ids/cpu-s")
for i, (s, p) in enumerate(zip(sm, prot)):
    b = f"{before[i]:.0f} | {p / before[i]:.2f}" if i < len(before) else "- | -"
    print(f"| {i + 1} | {s:.0f} | {s / 2:.0f} | {p:.0f} | **{p / (s / 2):.2f}** | {b} |")
print(f"| median | {statistics.median(sm):.0f} | {statistics.median(sm) / 2:.0f} | {statistics.median(prot):.0f} | "
      f"**{statistics.median(p / (s / 2) for s, p in zip(sm, prot)):.2f}** | "
      + (f"{statistics.median(before):.0f} | {statistics.median(p / b for p, b in zip(prot, before)):.2f} |" if before else "- | - |"))
PY
