#!/usr/bin/env bash
# Side-by-side: teeml's Go-native forests, boosted trees and k-means
# (ml/trees, ml/kmeans) vs scikit-learn (Debian python3-sklearn:
# RandomForestClassifier n_jobs=2, HistGradientBoostingClassifier/Regressor,
# KMeans) on the same train/test splits of the bundled datasets, 2 threads
# each side. Prints each side's test metric and two time ratios
# teeml/sklearn: TIME_RATIO is the whole `teeml train` process (start-up,
# dataset load, evaluation) over scikit-learn's fit; FIT_RATIO is teeml's
# training alone (its "trained ... seconds=" log line) over the same fit.
#
# The splits are the same rows (seed 1, test fraction 0.2). scikit-learn
# gets them through `teeml datasets export`, i.e. preprocessed as for the
# neural models (imputed, standardised); teeml's trees train on the raw
# split, missing values kept (matters for credit only).
#
# Then the synthetic large run: bench/treesbig writes a deterministic
# ROWS x 50 binary table (default 1 000 000 rows; "nan" for 5 % of five
# columns) and a 100 000-row test table, and both sides train 100 rounds,
# 31 leaves, lr 0.1, min leaf 20, no early stopping, from the same CSV:
# fit seconds, test AUC, wall time and peak RSS (/usr/bin/time -v) of each
# whole process (CSV parsing included).
#
# usage: bench/trees.sh [ROWS]   (needs python3-sklearn: apt-get install -y python3-sklearn)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import sklearn" 2>/dev/null; then
	echo "trees.sh: scikit-learn is not installed (Debian: apt-get install -y python3-sklearn); only teeml runs" >&2
	nosk=1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GOMAXPROCS=2 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
go build -o "$tmp/teeml" ./cmd/teeml
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %-7s %-26s %-34s %-10s %s\n' DATASET MODEL TEEML SKLEARN TIME_RATIO FIT_RATIO
run() { # dataset model sklearn-model sklearn-args -- teeml-args
	local ds=$1 model=$2 skm=$3 skargs=$4
	shift 5
	for s in train test; do
		[ -f "$tmp/$ds.$s.csv" ] || "$tmp/teeml" datasets export --dataset "$ds" --split "$s" -o "$tmp/$ds.$s.csv"
	done
	local t0 t1 tm
	t0=$(date +%s.%N)
	tm=$("$tmp/teeml" train --dataset "$ds" --model "$model" --threads 2 --log-level info "$@" 2>"$tmp/log" | grep '^test_' | tr '\n' ' ')
	t1=$(date +%s.%N)
	local tsec fsec sk="-" ratio="-" fratio="-"
	tsec=$(echo "$t1 - $t0" | bc -l)
	fsec=$(sed -n 's/.*msg=trained .*seconds=\([0-9.e-]*\).*/\1/p' "$tmp/log")
	if [ -z "${nosk:-}" ]; then
		# shellcheck disable=SC2086
		sk=$(/usr/bin/python3 bench/trees_sklearn.py "$skm" "$tmp/$ds.train.csv" "$tmp/$ds.test.csv" $skargs)
		local ssec=${sk##*fit_seconds=}
		ratio=$(printf '%.2f' "$(echo "$tsec / $ssec" | bc -l)")
		fratio=$(printf '%.2f' "$(echo "$fsec / $ssec" | bc -l)")
		sk=${sk% fit_seconds=*}
	fi
	printf '%-14s %-7s %-26s %-34s %-10s %s\n' "$ds" "$model" "$tm" "$sk" "$ratio" "$fratio"
}
run digits rf rf_cls "trees=100" -- --trees 100
run digits gbdt gbdt_cls "trees=200 lr=0.1 leaves=15 min_leaf=5 es=30" -- --trees 200 --lr 0.1 --num-leaves 15 --min-leaf 5 --early-stopping 30
run breast_cancer gbdt gbdt_cls "trees=300 lr=0.05 leaves=8 min_leaf=10 es=30" -- --trees 300 --lr 0.05 --num-leaves 8 --min-leaf 10 --early-stopping 30
run diabetes gbdt gbdt_reg "trees=300 lr=0.05 leaves=8 min_leaf=10 es=30" -- --trees 300 --lr 0.05 --num-leaves 8 --min-leaf 10 --early-stopping 30
run credit gbdt gbdt_cls "trees=600 lr=0.03 leaves=8 min_leaf=30 lambda=1 es=50" -- --trees 600 --lr 0.03 --num-leaves 8 --min-leaf 30 --lambda 1 --early-stopping 50
run digits kmeans kmeans "k=10" -- --k 10

rows=${1:-1000000}
echo "synthetic: $rows x 50 train, 100000 test; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
go build -o "$tmp/treesbig" ./bench/treesbig
"$tmp/treesbig" gen -rows "$rows" -cols 50 -seed 1 -o "$tmp/big.train.csv"
"$tmp/treesbig" gen -rows 100000 -cols 50 -seed 2 -o "$tmp/big.test.csv"
echo "train CSV: $(du -m "$tmp/big.train.csv" | cut -f1) MB"
bigside() { # name command...
	local name=$1
	shift
	local out
	out=$(/usr/bin/time -v -o "$tmp/time" "$@" 2>/dev/null)
	local wall rss
	wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/time")
	rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/time")
	printf '%-8s %-52s wall=%s peak_rss_mb=%d\n' "$name" "$out" "$wall" $((rss / 1024))
}
bigside teeml "$tmp/treesbig" train -train "$tmp/big.train.csv" -test "$tmp/big.test.csv" -trees 100 -lr 0.1 -leaves 31 -min-leaf 20 -threads 2
if [ -z "${nosk:-}" ]; then
	bigside sklearn /usr/bin/python3 bench/trees_sklearn.py gbdt_cls "$tmp/big.train.csv" "$tmp/big.test.csv" trees=100 lr=0.1 leaves=31 min_leaf=20 es=0
fi
