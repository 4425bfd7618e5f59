#!/usr/bin/python3
"""Trains the XGBoost fixture models that teeml loads through leaves.

Run from this directory with Debian's python3-xgboost (1.7.4):

    /usr/bin/python3 gen.py

Reads the datasets teeml bundles (../../../datasets/data/sklearn), holds out
every fifth row (rows 0, 5, 10, ...) as the test rows, trains on the others
and writes, per model:

  NAME.model            XGBoost's binary model format (Booster.save_model)
  NAME_test.csv         the held-out rows, raw features, header of feature names
  NAME_predictions.csv  xgboost's own predictions on them: probabilities
                        (one column per class; binary: p of class 1) or the
                        regression value, written with repr() (full float64)
"""
import csv
import gzip
import os

import numpy as np
import xgboost as xgb

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "datasets", "data", "sklearn")


def numeric(name, sep, skip):
    with gzip.open(os.path.join(DATA, name), "rt") as f:
        lines = f.read().splitlines()[skip:]
    return np.array([[float(v) for v in (l.split(sep) if sep != " " else l.split())] for l in lines if l.strip()])


def breast_cancer():
    a = numeric("breast_cancer.csv.gz", ",", 1)
    return a[:, :-1], a[:, -1]


def digits():
    a = numeric("digits.csv.gz", ",", 0)
    return a[:, :-1], a[:, -1]


def diabetes():
    x = numeric("diabetes_data_raw.csv.gz", " ", 0)
    y = numeric("diabetes_target.csv.gz", " ", 0)[:, 0]
    return x, y


def write(name, x, y, params, rounds):
    test = np.arange(len(y)) % 5 == 0
    dtrain = xgb.DMatrix(x[~test], label=y[~test])
    bst = xgb.train(params, dtrain, rounds)
    bst.save_model(name + ".model")
    pred = bst.predict(xgb.DMatrix(x[test]))
    if pred.ndim == 1:
        pred = pred[:, None]
    with open(name + "_test.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["f%d" % j for j in range(x.shape[1])])
        for row in x[test]:
            w.writerow([repr(float(v)) for v in row])
    with open(name + "_predictions.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["p%d" % j for j in range(pred.shape[1])])
        for row in pred:
            w.writerow([repr(float(v)) for v in row])


x, y = breast_cancer()
write("xgb_breast_cancer", x, y, {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 1}, 20)
x, y = digits()
write("xgb_digits", x, y, {"objective": "multi:softprob", "num_class": 10, "max_depth": 3, "eta": 0.3, "seed": 1}, 10)
x, y = diabetes()
write("xgb_diabetes", x, y, {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.1, "seed": 1}, 30)
