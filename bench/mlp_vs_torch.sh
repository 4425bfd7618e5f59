#!/usr/bin/env bash
# Side-by-side: the same MLP (64 -> 128 -> 64 -> 10, ReLU, softmax
# cross-entropy, Adam) on the same preprocessed digits split, same batch
# size, epochs and thread count, teeml (GoMLX Go backend) vs PyTorch
# (Debian python3-torch). Prints examples/s per side (median over epochs 2..N,
# the first epoch includes graph compilation / warm-up) and their ratio, all
# measured in this one run.
#
# teeml is built with GOEXPERIMENT=simd (GoMLX's AVX2/AVX-512 matmul
# kernels, see README "Build"); SIMD=0 builds the default pure-Go binary to
# compare.
#
# usage: [SIMD=0] bench/mlp_vs_torch.sh [epochs] [batch] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-20}
batch=${2:-32}
threads=${3:-2}
lr=0.003
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "${SIMD:-1}" = 0 ]; then
	go build -o "$tmp/teeml" ./cmd/teeml
else
	GOEXPERIMENT=simd go build -o "$tmp/teeml" ./cmd/teeml
fi
echo "teeml build: $("$tmp/teeml" version | sed -n 's/^ml kernels: //p')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/teeml" datasets export --dataset digits --split train --seed 1 -o "$tmp/train.csv"
"$tmp/teeml" datasets export --dataset digits --split test --seed 1 -o "$tmp/test.csv"

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo "teeml: train --dataset digits --model mlp --epochs $epochs --batch $batch --lr $lr --threads $threads"
"$tmp/teeml" train --dataset digits --model mlp --epochs "$epochs" --batch "$batch" --lr "$lr" \
	--threads "$threads" --seed 1 --log-level warn | tee "$tmp/teeml.out"
teeml_eps=$(grep '^epoch ' "$tmp/teeml.out" | tail -n +2 | sed 's/.* \([0-9.]*\) examples\/s$/\1/' | median)
teeml_acc=$(sed -n 's/^test_accuracy=//p' "$tmp/teeml.out")

echo "torch: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') threads=$threads"
/usr/bin/python3 bench/mlp_digits_torch.py --train "$tmp/train.csv" --test "$tmp/test.csv" \
	--epochs "$epochs" --batch "$batch" --lr "$lr" --threads "$threads" | tee "$tmp/torch.out"
torch_eps=$(tail -n +2 "$tmp/torch.out" | /usr/bin/python3 -c 'import sys,json; [print(json.loads(l)["examples_per_s"]) for l in sys.stdin]' | median)
torch_acc=$(tail -n 1 "$tmp/torch.out" | /usr/bin/python3 -c 'import sys,json; print(round(json.loads(sys.stdin.read())["test_accuracy"],4))')

printf '\n%-8s %14s %14s\n' side examples/s test_accuracy
printf '%-8s %14.0f %14s\n' teeml "$teeml_eps" "$teeml_acc"
printf '%-8s %14.0f %14s\n' pytorch "$torch_eps" "$torch_acc"
awk -v a="$teeml_eps" -v b="$torch_eps" 'BEGIN {printf "ratio teeml/pytorch examples/s: %.2f\n", a/b}'
