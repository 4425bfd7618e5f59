#!/usr/bin/python3
"""teeml serve's PyTorch runner: answers predictions of a TorchScript module.

teeml serve (model kind `pytorch`, package serve/pyrunner) starts this once per
model process slot and speaks over stdin/stdout (little-endian):

  start:   u64 model length, the TorchScript bytes (torch.jit.save), u32 input width
           -> one line "READY <output width>" (or "ERROR <reason>")
  request: u32 rows, rows x width float32
           -> u8 0, u32 rows, u32 outputs, rows x outputs float32
           or u8 1, u32 length, a one-line reason

The model's bytes arrive over the pipe (teeml unsealed them in memory) and
are loaded from memory: they never touch the disk. The module's output is
returned as it is (put a softmax in the module for probabilities).
Needs only Debian's python3-torch and python3-numpy.
"""
import io
import os
import struct
import sys

import numpy as np
import torch


def read_exact(f, n):
    b = bytearray()
    while len(b) < n:
        chunk = f.read(n - len(b))
        if not chunk:
            return None
        b.extend(chunk)
    return bytes(b)


def main():
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    torch.set_num_threads(int(os.environ.get("TEEML_THREADS", "1")))
    hdr = read_exact(inp, 8)
    if hdr is None:
        return
    (n,) = struct.unpack("<Q", hdr)
    model = read_exact(inp, n)
    wb = read_exact(inp, 4)
    if model is None or wb is None:
        return
    (width,) = struct.unpack("<I", wb)
    try:
        m = torch.jit.load(io.BytesIO(model), map_location="cpu")
        m.eval()
        with torch.no_grad():
            k = int(m(torch.zeros(1, width)).reshape(1, -1).shape[1])
    except Exception as e:  # the reason goes back as one line
        out.write(("ERROR %s: %s\n" % (type(e).__name__, " ".join(str(e).split()))).encode())
        out.flush()
        return
    out.write(b"READY %d\n" % k)
    out.flush()
    while True:
        rb = read_exact(inp, 4)
        if rb is None:
            return
        (rows,) = struct.unpack("<I", rb)
        data = read_exact(inp, rows * width * 4)
        if data is None:
            return
        try:
            x = torch.from_numpy(np.frombuffer(data, dtype="<f4").reshape(rows, width).copy())
            with torch.no_grad():
                y = m(x).reshape(rows, -1).to(torch.float32).numpy().astype("<f4")
            if y.shape[1] != k:
                raise ValueError("model answered %d outputs per row, %d at start" % (y.shape[1], k))
            out.write(struct.pack("<BII", 0, rows, k))
            out.write(y.tobytes())
        except Exception as e:
            msg = ("%s: %s" % (type(e).__name__, " ".join(str(e).split()))).encode()[:4096]
            out.write(struct.pack("<BI", 1, len(msg)))
            out.write(msg)
        out.flush()


if __name__ == "__main__":
    main()
