#!/usr/bin/env bash
# Key broker root keys: wraps/s of the simulation key file (AES-256-GCM in
# Go) against a SoftHSM2 token (CKM_AES_GCM inside the token via PKCS#11),
# and the PKCS#11 session pool at 1, 2 and 4 sessions under 8 concurrent
# callers. Each benchmark runs COUNT times (default 3); the table shows the
# median and ratios of medians from this one run.
#
#   bench/rootkeys.sh [COUNT] [BENCHTIME]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-3}"
benchtime="${2:-2s}"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
go test ./kms/rootkey/ -run '^$' -bench . -benchtime "$benchtime" -count "$count" | tee "$out" | grep -E '^(Benchmark|ok|FAIL)' >&2
echo "load average at end:   $(cut -d' ' -f1-3 /proc/loadavg)"
# Median of the wraps/s (or unwraps/s) metric per benchmark.
awk '
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 2; i < NF; i++) if ($(i+1) ~ /^(un)?wraps\/s$/) v[name] = v[name] " " $i
}
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	for (k in v) m[k] = median(v[k])
	print "| benchmark | median ops/s |"
	print "|---|---|"
	n = split("BenchmarkWrap/file BenchmarkWrap/pkcs11-softhsm2 BenchmarkUnwrap/file BenchmarkUnwrap/pkcs11-softhsm2 BenchmarkWrapParallel/file BenchmarkWrapParallel/pkcs11-sessions=1 BenchmarkWrapParallel/pkcs11-sessions=2 BenchmarkWrapParallel/pkcs11-sessions=4", keys, " ")
	for (i = 1; i <= n; i++) printf "| %s | %d |\n", keys[i], m[keys[i]]
	printf "\nfile / pkcs11 wrap: %.0fx; file / pkcs11 unwrap: %.0fx\n",
		m["BenchmarkWrap/file"] / m["BenchmarkWrap/pkcs11-softhsm2"], m["BenchmarkUnwrap/file"] / m["BenchmarkUnwrap/pkcs11-softhsm2"]
	printf "parallel pkcs11 sessions 2/1: %.2f, 4/1: %.2f\n",
		m["BenchmarkWrapParallel/pkcs11-sessions=2"] / m["BenchmarkWrapParallel/pkcs11-sessions=1"],
		m["BenchmarkWrapParallel/pkcs11-sessions=4"] / m["BenchmarkWrapParallel/pkcs11-sessions=1"]
}' "$out"
