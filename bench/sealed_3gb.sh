#!/bin/sh
# Streams 3 GiB of random data through `teeml data encrypt` and `decrypt`,
# checks that the round trip is byte-identical (sha256) and reports wall time,
# throughput and peak RSS (/usr/bin/time -v) of each command.
# Usage: bench/sealed_3gb.sh [MiB] [workdir]   (from the repository root)
# Needs 3x the size free in workdir (default: a temporary directory under
# /work, or /tmp); everything is deleted at the end.
set -eu
mib=${1:-3072}
base=${2:-}
if [ -z "$base" ]; then
	if [ -d /work ]; then base=/work; else base=/tmp; fi
fi
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
dir=$(mktemp -d "$base/sealed3gb.XXXXXX")
trap 'rm -rf "$dir"' EXIT
need=$((mib * 3 + 100))
avail=$(df -Pm "$dir" | awk 'NR==2 {print $4}')
[ "$avail" -gt "$need" ] || { echo "need ${need} MiB free in $dir, have ${avail}" >&2; exit 1; }
echo "df: $(df -h "$dir" | awk 'NR==2 {print $4 " free on " $6}')"

go build -o "$dir/teeml" ./cmd/teeml
"$dir/teeml" data keygen --key-file "$dir/keys.json" --key bench >/dev/null

echo "generating $mib MiB from /dev/urandom"
head -c "${mib}M" /dev/urandom >"$dir/plain.bin"

measure() { # label, command...
	label=$1
	shift
	/usr/bin/time -v "$@" >"$dir/out.txt" 2>"$dir/time.txt" || { cat "$dir/out.txt" "$dir/time.txt" >&2; exit 1; }
	rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
	wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
	secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
	mbs=$(awk -v m="$mib" -v s="$secs" 'BEGIN { printf "%.0f", m * 1.048576 / s }')
	printf '%-8s wall %8s s  %5s MB/s  peak RSS %6.1f MiB\n' "$label" "$secs" "$mbs" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
measure encrypt "$dir/teeml" data encrypt --log-level error --key-file "$dir/keys.json" --in "$dir/plain.bin" --out "$dir/data.sealed"
measure decrypt "$dir/teeml" data decrypt --log-level error --key-file "$dir/keys.json" --in "$dir/data.sealed" --out "$dir/plain.out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
ls -l "$dir/plain.bin" "$dir/data.sealed" "$dir/plain.out" | awk '{print $5, $9}'
a=$(sha256sum <"$dir/plain.bin" | cut -d' ' -f1)
b=$(sha256sum <"$dir/plain.out" | cut -d' ' -f1)
echo "sha256 plaintext: $a"
echo "sha256 decrypted: $b"
[ "$a" = "$b" ] || { echo "MISMATCH" >&2; exit 1; }
echo "round trip identical"
