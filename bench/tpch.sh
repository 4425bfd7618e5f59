#!/bin/sh
# TPC-H plaintext vs sealed, side by side in one run: generates SF N once
# (plaintext and sealed copies in one pass), loads each copy into a fresh
# locked-down DuckDB and runs the 22 queries on it; prints the per-step table,
# the checks, the sealed/plaintext ratio and the peak RSS. With rounds 2 (the
# default) the copies run plain, sealed, sealed, plain and each step keeps its
# fastest time, so warm-up (the first engine faults in its memory) favours
# neither side.
# Usage: bench/tpch.sh [sf] [memory-limit] [rounds]   (from the repository root)
set -eu
sf=${1:-1}
mem=${2:-12GB}
rounds=${3:-2}
bin=$(mktemp -d)
dir=$(mktemp -d)
trap 'rm -rf "$bin" "$dir"' EXIT
go build -o "$bin/teeml" ./cmd/teeml
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f 'peak RSS %M KiB, wall %e s' "$bin/teeml" sql tpch --sf "$sf" --encrypted --dir "$dir/d" \
	--memory-limit "$mem" --rounds "$rounds" --log-level warn
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
