#!/usr/bin/python3
"""scikit-learn side of bench/trees.sh: train on an exported train CSV,
score on the test CSV, print 'metric=value fit_seconds=S'.

usage: trees_sklearn.py MODEL TRAIN.csv TEST.csv
MODEL: rf_cls | gbdt_cls | gbdt_reg | kmeans; gbdt es=0: no early stopping
"""
import sys
import time

import numpy as np

try:
    from sklearn.cluster import KMeans
    from sklearn.ensemble import (HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor,
                                  RandomForestClassifier)
    from sklearn.metrics import adjusted_rand_score, roc_auc_score
except ImportError:
    print("sklearn_missing: install Debian python3-sklearn (apt-get install -y python3-sklearn)")
    sys.exit(3)


def load(path):
    # loadtxt's C parser: "nan" is a missing value (bench/treesbig writes it)
    a = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return a[:, :-1], a[:, -1]


def main():
    model, train, test = sys.argv[1], sys.argv[2], sys.argv[3]
    extra = dict(a.split("=", 1) for a in sys.argv[4:])
    xtr, ytr = load(train)
    xte, yte = load(test)
    t0 = time.perf_counter()
    if model == "rf_cls":
        m = RandomForestClassifier(n_estimators=int(extra.get("trees", 100)), n_jobs=2, random_state=1).fit(xtr, ytr)
    elif model in ("gbdt_cls", "gbdt_reg"):
        cls = HistGradientBoostingClassifier if model == "gbdt_cls" else HistGradientBoostingRegressor
        m = cls(max_iter=int(extra["trees"]), learning_rate=float(extra["lr"]), max_leaf_nodes=int(extra["leaves"]),
                min_samples_leaf=int(extra["min_leaf"]), l2_regularization=float(extra.get("lambda", 0)),
                early_stopping=int(extra["es"]) > 0, validation_fraction=0.1, n_iter_no_change=max(int(extra["es"]), 1),
                random_state=1).fit(xtr, ytr)
    elif model == "kmeans":
        m = KMeans(n_clusters=int(extra["k"]), n_init=10, random_state=1).fit(xtr)
    else:
        raise SystemExit(f"unknown model {model}")
    secs = time.perf_counter() - t0
    if model == "kmeans":
        print(f"test_ari={adjusted_rand_score(yte, m.predict(xte)):.4f} fit_seconds={secs:.3f}")
    elif model == "gbdt_reg":
        rmse = float(np.sqrt(np.mean((m.predict(xte) - yte) ** 2)))
        print(f"test_rmse={rmse:.4f} fit_seconds={secs:.3f}")
    elif len(np.unique(ytr)) == 2:
        auc = roc_auc_score(yte, m.predict_proba(xte)[:, 1])
        acc = float(np.mean(m.predict(xte) == yte))
        print(f"test_auc={auc:.4f} test_accuracy={acc:.4f} fit_seconds={secs:.3f}")
    else:
        print(f"test_accuracy={float(np.mean(m.predict(xte) == yte)):.4f} fit_seconds={secs:.3f}")


if __name__ == "__main__":
    main()
