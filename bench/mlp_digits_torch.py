#!/usr/bin/python3
"""PyTorch side of bench/mlp_vs_torch.sh.

Trains the same MLP as `teeml train --model mlp` (64 -> 128 -> 64 -> 10, ReLU,
softmax cross-entropy, Adam) on the same prepared digits split that
`teeml datasets export` wrote, with the same batch size, epochs and thread
count, and prints one JSON line per epoch with examples/s measured around the
training loop only (no start-up, no data loading).
"""
import argparse
import json
import sys
import time

import numpy as np
import torch


def load(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    # Columns: id is not exported as a number; teeml exports features..., label.
    return torch.from_numpy(data[:, :-1].copy()), torch.from_numpy(data[:, -1].astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", default="128,64")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.train)
    xte, yte = load(a.test)
    widths = [xtr.shape[1]] + [int(h) for h in a.hidden.split(",") if h] + [int(ytr.max()) + 1]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
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
