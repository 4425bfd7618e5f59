#!/bin/sh
# TPC-H plaintext vs sealed, side by side in one run: generates SF N once
# (plaintext and sealed copies in one pass), loads each copy into a fresh
# locked-down DuckDB and runs the 22 queries on it; prints the per-step table,
# the checks, the sealed/plaintext ratio and the peak RSS.
# Usage: bench/tpch.sh [sf] [memory-limit]   (from the repository root)
set -eu
sf=${1:-1}
mem=${2:-12GB}
bin=$(mktemp -d)
dir=$(mktemp -d)
trap 'rm -rf "$bin" "$dir"' EXIT
go build -o "$bin/teeml" ./cmd/teeml
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f 'peak RSS %M KiB, wall %e s' "$bin/teeml" sql tpch --sf "$sf" --encrypted --dir "$dir/d" \
	--memory-limit "$mem" --log-level warn
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
