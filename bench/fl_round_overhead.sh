#!/usr/bin/env bash
# FL protocol overhead per round against raw TLS, side by side in one run
# (fl/protocol BenchmarkRoundOverhead8x10M): one aggregator and 8
# collaborators over loopback RA-TLS (simulated evidence) with a
# 10M-parameter model, and in the same iteration the same 2·N·model bytes
# through 8 plain crypto/tls 1.3 connections. Prints, per run, the wall and
# CPU ratios round / raw TLS and wire / payload; with PROFILE=1 also the
# CPU profile's top entries (what remains).
#
#   bench/fl_round_overhead.sh [runs]      # default 3 runs of 2 iterations
set -euo pipefail
RUNS=${1:-3}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
prof=()
if [ "${PROFILE:-0}" = 1 ]; then
	prof=(-cpuprofile "$work/cpu.prof" -o "$work/protocol.test")
fi
go test ./fl/protocol -run '^$' -bench 'RoundOverhead8x10M$' -benchtime 2x -count "$RUNS" "${prof[@]}" 2>&1 |
	grep -oE '[0-9.]+ (round/rawTLS|cpu-round/rawTLS|wire/payload|s/round|rawTLS-s|cpu-s/round|rawTLS-cpu-s)' |
	awk '{v[$2]=$1}
	     $2=="wire/payload" {printf "round %.3f s, raw TLS %.3f s: round/rawTLS %.2f | CPU %.3f s vs %.3f s: %.2f | wire/payload %.4f\n",
	       v["s/round"], v["rawTLS-s"], v["round/rawTLS"], v["cpu-s/round"], v["rawTLS-cpu-s"], v["cpu-round/rawTLS"], v["wire/payload"]}'
if [ "${PROFILE:-0}" = 1 ]; then
	go tool pprof -top -nodecount=20 "$work/protocol.test" "$work/cpu.prof" 2>/dev/null | sed -n '4,30p'
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
