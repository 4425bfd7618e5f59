#!/usr/bin/python3
"""PyTorch <-> safetensors interop helper for teeml's Go tests.

Needs only torch (Debian: python3-torch), not the `safetensors` Python
package: the format is parsed and produced here with json + struct, and
tensors are built with torch.frombuffer, so this is an implementation
independent of teeml's Go code.

    torch_interop.py load FILE    validate FILE strictly, load every tensor
                                  with torch and print a JSON summary
    torch_interop.py write FILE   write a reference-layout file of several
                                  dtypes and print a JSON description

Values are printed with repr() as strings ("nan", "-inf", "-0.0" included)
so nothing is lost in JSON.
"""

import json
import math
import struct
import sys

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100_000_000
MAX_VALUES = 64  # tensors up to this size have every value printed


def fail(msg):
    print("torch_interop: " + msg, file=sys.stderr)
    sys.exit(1)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        fail("duplicate JSON key in %r" % keys)
    return dict(pairs)


def load(path):
    with open(path, "rb") as f:
        raw = bytearray(f.read())  # writable, so frombuffer does not warn
    if len(raw) < 8:
        fail("file too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        fail("bad header length %d" % n)
    if n % 8 != 0:
        fail("header length %d is not a multiple of 8" % n)
    text = raw[8 : 8 + n].decode("utf-8")
    if not text.startswith("{"):
        fail("header does not start with '{'")
    header = json.loads(text, object_pairs_hook=no_duplicates)
    meta = header.pop("__metadata__", None) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        fail("metadata must map strings to strings")
    buf = raw[8 + n :]

    # The byte buffer must be tiled exactly by the tensors.
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    pos = 0
    for begin, end, name in spans:
        if begin != pos or end < begin:
            fail("tensor %s: data_offsets [%d, %d] do not follow %d" % (name, begin, end, pos))
        pos = end
    if pos != len(buf):
        fail("data buffer is %d bytes, tensors cover %d" % (len(buf), pos))

    tensors = {}
    for name, info in header.items():
        dtype = DTYPES[info["dtype"]]
        shape = info["shape"]
        begin, end = info["data_offsets"]
        count = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if count * itemsize != end - begin:
            fail("tensor %s: shape %r does not match %d bytes" % (name, shape, end - begin))
        if begin % itemsize != 0:
            fail("tensor %s: offset %d not aligned to %d" % (name, begin, itemsize))
        if count == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(buf, dtype=dtype, count=count, offset=begin).reshape(shape)
        tensors[name] = t

    out = {"header_order": list(header.keys()), "metadata": meta, "tensors": {}}
    for name, t in tensors.items():
        d = t.double().flatten()
        idx = torch.arange(d.numel(), dtype=torch.float64)
        entry = {
            "dtype": DTYPE_NAMES[t.dtype],
            "torch_dtype": str(t.dtype),
            "shape": list(t.shape),
            "numel": t.numel(),
            "sum": repr(float(d.sum())),
            "weighted_sum": repr(float((d * idx).sum())),
        }
        if t.numel() <= MAX_VALUES:
            entry["values"] = [repr(float(x)) for x in d.tolist()]
        out["tensors"][name] = entry
    print(json.dumps(out))


def all_16bit(dtype):
    """Every 16-bit pattern, in order 0x0000..0xffff, viewed as dtype."""
    bits = torch.arange(65536, dtype=torch.int32)
    bits = torch.where(bits >= 32768, bits - 65536, bits).to(torch.int16)
    return bits.view(dtype).reshape(256, 256)


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        t = t.view(torch.int16)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().tobytes()


def write(path):
    if sys.byteorder != "little":
        fail("this helper assumes a little-endian machine")
    i64 = torch.tensor([-5, 0, 7, 2**40 + 1, 2**53 + 1, -(2**63), 2**63 - 1, 16777217], dtype=torch.int64)
    i32 = (torch.arange(-6, 6, dtype=torch.int32) * 1000003).reshape(3, 4)
    i16 = torch.tensor([-32768, -1, 0, 1, 32767], dtype=torch.int16)
    i8 = torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8)
    u8 = torch.arange(0, 256, 51, dtype=torch.uint8)
    bools = torch.tensor([True, False, True], dtype=torch.bool)
    f64 = torch.tensor(
        [0.0, -0.0, 1 / 3, 1e300, -1e300, float("nan"), float("inf"), 1e-50, 3 * 2.0**-149, 0.1],
        dtype=torch.float64,
    )
    f16 = all_16bit(torch.float16)
    bf16 = all_16bit(torch.bfloat16)
    tensors = {
        "f32": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) * 0.25 - 3,
        "f32_scalar": torch.tensor(2.5, dtype=torch.float32),
        "f32_empty": torch.zeros(0, 3, dtype=torch.float32),
        "f64": f64,
        "f64_as_f32": f64.float(),
        "f16_all": f16,
        "f16_all_as_f32": f16.float(),
        "bf16_all": bf16,
        "bf16_all_as_f32": bf16.float(),
        "i64": i64,
        "i64_as_f32": i64.float(),
        "i32": i32,
        "i32_as_f32": i32.float(),
        "i16": i16,
        "i16_as_f32": i16.float(),
        "i8": i8,
        "i8_as_f32": i8.float(),
        "u8": u8,
        "u8_as_f32": u8.float(),
        "bool": bools,
        "bool_as_f32": bools.float(),
    }
    # The reference implementation's layout: larger elements first, then by
    # name, so every tensor is aligned.
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header = {"__metadata__": {"format": "pt", "source": "torch_interop.py"}}
    data = bytearray()
    for name in order:
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [len(data), len(data) + len(b)],
        }
        data += b
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        f.write(data)
    print(json.dumps({"order": order, "torch_version": torch.__version__}))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("load", "write"):
        fail("usage: torch_interop.py load|write FILE")
    if sys.argv[1] == "load":
        load(sys.argv[2])
    else:
        write(sys.argv[2])


if __name__ == "__main__":
    main()
