#!/usr/bin/env bash
# Inference serving, side by side in one run: teeml serve (digits MLP, REST
# over RA-TLS, dynamic batching on and off) and the same MLP (teeml's
# weights) in PyTorch behind a minimal Python HTTPS server (Debian
# python3-torch), one-row JSON requests at concurrency 1, 8 and 64.
# usage: bench/serve.sh [requests per level]
set -euo pipefail
cd "$(dirname "$0")/.."
GOMAXPROCS=2 go run ./bench/serve -n "${1:-3000}"
