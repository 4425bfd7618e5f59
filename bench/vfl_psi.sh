#!/usr/bin/env bash
# Benchmark of `teeml vfl psi` as two processes on loopback (RA-TLS with
# SIMULATED evidence): N IDs per party with 50% overlap. Checks that both
# aligned files are identical and equal the plain intersection, and prints
# wall time, CPU time and peak RSS of each party.
#
#   bench/vfl_psi.sh [N] [mode]      # default 1000000 both
set -euo pipefail
N=${1:-1000000}
MODE=${2:-both}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/teeml" ./cmd/teeml
go run ./bench/vflpsiws -dir "$work/ws" -n "$N"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ws=$work/ws
/usr/bin/time -f "leader: wall %e s, cpu %U+%S s, max RSS %M KiB" "$work/teeml" --log-level warn vfl psi -w "$ws" -n bank --role leader \
  --mode "$MODE" --ids "$ws/bank.ids" -o "$ws/bank.aligned" --listen "127.0.0.1:$port" > "$work/leader.out" 2> "$work/leader.err" &
lead=$!
/usr/bin/time -f "follower: wall %e s, cpu %U+%S s, max RSS %M KiB" "$work/teeml" --log-level warn vfl psi -w "$ws" -n shop --role follower \
  --mode "$MODE" --ids "$ws/shop.ids" -o "$ws/shop.aligned" --peer "127.0.0.1:$port" > "$work/follower.out" 2> "$work/follower.err" || {
  cat "$work/follower.err"; kill "$lead"; exit 1; }
wait "$lead" || { cat "$work/leader.err"; exit 1; }
grep -h "vfl psi:" "$work/leader.out" "$work/follower.out"
tail -n1 "$work/leader.err"
tail -n1 "$work/follower.err"
sort "$ws/bank.aligned" | cmp - "$ws/expected.sorted" && echo "leader's intersection equals the plain intersection ($(wc -l < "$ws/expected.sorted") IDs)"
if [ "$MODE" = both ]; then
  cmp "$ws/bank.aligned" "$ws/shop.aligned" && echo "both aligned files are identical (same order)"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
