#!/bin/sh
# Sealed-file throughput against raw AES-256-GCM (crypto/cipher) in the same
# run, and the ratio per buffer size (median over -count runs).
# Usage: bench/sealed_bench.sh [count]   (from the repository root)
set -eu
count=${1:-6}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test ./sealed/ -run '^$' -bench 'BenchmarkSealed' -benchtime 1s -count "$count" | tee "$out"
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"BenchmarkSealed/([\w-]+)/(\w+)-\d+\s+\d+\s+\d+ ns/op\s+([\d.]+) MB/s", line)
    if m:
        runs.setdefault((m.group(1), m.group(2)), []).append(float(m.group(3)))
print("\nsize     op        raw AES-GCM MB/s  sealed MB/s  sealed/raw (median of %d)" % len(next(iter(runs.values()))))
for size in sorted({s for _, s in runs}, key=lambda s: int(s[:-3])):
    for op, raw, sealed in (("encrypt", "raw-aes-gcm-seal", "sealed-encrypt"), ("decrypt", "raw-aes-gcm-open", "sealed-decrypt")):
        r, s = statistics.median(runs[(raw, size)]), statistics.median(runs[(sealed, size)])
        print(f"{size:8} {op:9} {r:16.0f}  {s:11.0f}  {s / r:10.0%}")
PY
