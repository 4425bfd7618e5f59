#!/usr/bin/env bash
# DP-FedAvg on digits: test accuracy at ε = 1, 3, 8 (δ = 1e-5) against the
# non-private FedAvg run with the same clients, sampling, rounds and local
# training (bench/dpdigits; docs/benchmarks.md, docs/privacy.md). Defaults:
# 1437 users of one training example each, q = 0.1 (≈ 144 per round),
# 60 rounds, C = 1, 5 local SGD epochs at lr 0.5. Takes a few minutes on
# 2 cores; extra flags go to the program (e.g. -clients 400 -q 0.25).
#
# usage: bench/dp_digits.sh [flags]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg); $(go version)"
go run ./bench/dpdigits "$@"
