#!/bin/sh
# Wall time of `teeml quickstart` vs `teeml quickstart --encrypted` (same
# defaults: 8 rounds, 5 epochs, 3 collaborators), alternating runs so both
# see the same machine load. Usage: bench/quickstart-encrypted.sh [RUNS]
set -eu
runs=${1:-3}
bin=$(mktemp -d)/teeml
go build -o "$bin" ./cmd/teeml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$(dirname "$bin")"' EXIT
i=1
while [ "$i" -le "$runs" ]; do
	for mode in plain encrypted; do
		flag=""
		[ "$mode" = encrypted ] && flag="--encrypted"
		start=$(date +%s.%N)
		"$bin" quickstart $flag --dir "$tmp/$mode-$i" --log-level error >"$tmp/$mode-$i.out" 2>&1
		end=$(date +%s.%N)
		acc=$(sed -n 's/^final accuracy: //p' "$tmp/$mode-$i.out")
		echo "run $i $mode wall_s=$(echo "$end - $start" | bc) accuracy=$acc"
	done
	i=$((i + 1))
done
