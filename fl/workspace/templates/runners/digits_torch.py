#!/usr/bin/python3
"""teeml external training runner: a PyTorch MLP on digits.

teeml launches this script once per task with $TEEML_TASK_FILE naming a JSON
task file (see docs/runners.md). It reads the global weights and the
preprocessed data from safetensors files teeml wrote, and writes the new
weights (safetensors, F32) and metrics.json. Exit status 0 means success;
anything else fails the task, and teeml quotes the last stderr lines. With
task_runner.runner.persistent: true ($TEEML_SERVE=1) one process serves every
task: task file paths arrive on stdin, and each is answered on fd 3 with
"done" or "error <reason>".

Only Debian's python3-torch and python3-numpy are used: the safetensors
format is read and written with json + struct below (no PyPI packages).
"""
import json
import os
import struct
import sys
import traceback

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name}: dtype {e['dtype']}, want F32")
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[base + b:base + end], dtype="<f4").reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name].detach().to(torch.float32).contiguous().numpy().astype("<f4", copy=False)
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


class MLP(nn.Module):
    def __init__(self, d, k, hidden=128):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, k)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


def build(task):
    ds = task["dataset"]
    return MLP(ds["num_features"], ds["num_classes"])


def load_data(path):
    t = read_safetensors(path)
    return t["x"], t["y"].long()


def train(task, model):
    hp = task["hyperparameters"]
    x, y = load_data(task["data"])
    global_w = [p.detach().clone() for p in model.parameters()]
    mu = hp.get("proximal_mu", 0.0)
    opt_cls = torch.optim.Adam if hp["optimizer"] == "adam" else torch.optim.SGD
    opt = opt_cls(model.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"])
    g = torch.Generator().manual_seed(hp["seed"])
    model.train()
    total, seen = 0.0, 0
    for _ in range(hp["epochs"]):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), hp["batch_size"]):
            idx = perm[i:i + hp["batch_size"]]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if mu > 0:  # FedProx proximal term
                loss = loss + mu / 2 * sum(((p - g0) ** 2).sum() for p, g0 in zip(model.parameters(), global_w))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
    return {"num_examples": len(x), "loss": total / max(seen, 1)}


@torch.no_grad()
def evaluate(task, model):
    x, y = load_data(task["data"])
    model.eval()
    logits = model(x)
    return {
        "num_examples": len(x),
        "loss": F.cross_entropy(logits, y).item(),
        "metrics": {"accuracy": (logits.argmax(1) == y).float().mean().item()},
    }


def run_task(path):
    with open(path) as f:
        task = json.load(f)
    if task["teeml_runner"] != 1:
        raise ValueError(f"unsupported task file version {task['teeml_runner']}")
    torch.manual_seed(task["hyperparameters"]["seed"])
    model = build(task)
    if task["input_weights"]:
        model.load_state_dict(read_safetensors(task["input_weights"]), strict=True)
    kind = task["task"]
    if kind == "init":
        metrics = None
    elif kind == "train":
        metrics = train(task, model)
    elif kind == "evaluate":
        metrics = evaluate(task, model)
    else:
        raise ValueError(f"unknown task {kind!r}")
    if task["output_weights"]:
        write_safetensors(task["output_weights"], model.state_dict())
    if metrics is not None:
        with open(task["metrics"], "w") as f:
            json.dump(metrics, f)
    print(f"{kind} round {task['round']}: {metrics}", file=sys.stderr, flush=True)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if os.environ.get("TEEML_SERVE") != "1":
        # One task per process: any exception exits non-zero.
        run_task(os.environ["TEEML_TASK_FILE"])
        return
    # Persistent (task_runner.runner.persistent: true): task file paths on
    # stdin, one answer line per task on fd 3; torch is imported once.
    answers = os.fdopen(3, "w", buffering=1)
    for line in sys.stdin:
        try:
            run_task(line.strip())
            answers.write("done\n")
        except Exception as e:  # the task fails, the runner stays up
            traceback.print_exc()
            answers.write("error " + " ".join(f"{type(e).__name__}: {e}".split()) + "\n")


if __name__ == "__main__":
    main()
