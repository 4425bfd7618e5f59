#!/usr/bin/python3
"""PyTorch side of bench/serve.sh: the same digits MLP (teeml's weights,
read from its safetensors file without the `safetensors` package) behind a
minimal Python HTTPS server answering the Open Inference Protocol's REST
infer call with JSON tensors. Prints "listening PORT" when ready."""
import argparse
import json
import ssl
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


def load(path):
    raw = bytearray(open(path, "rb").read())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", name
        b, e = t["data_offsets"]
        tensors[name] = torch.frombuffer(raw[base + b:base + e], dtype=torch.float32).reshape(t["shape"]).clone()
    pipe = json.loads(meta.get("teeml.pipeline", "{}"))
    return tensors, float(pipe.get("pixel_scale") or 1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w, scale = load(a.model)
    layers = sorted({k.split("/")[0] for k in w}, key=lambda s: int(s.split("_")[1]))

    def forward(x):
        x = x * scale
        for i, l in enumerate(layers):
            x = x @ w[l + "/weights"] + w[l + "/biases"]
            if i < len(layers) - 1:
                x = torch.relu(x)
        return torch.softmax(x, dim=1)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one response, not headers then body 40 ms apart (delayed ACK)

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            req = json.loads(body)
            inp = req["inputs"][0]
            x = torch.tensor(inp["data"], dtype=torch.float32).reshape(inp["shape"])
            with torch.no_grad():
                y = forward(x)
            out = json.dumps({"model_name": "digits", "outputs": [{"name": "output", "datatype": "FP32",
                              "shape": list(y.shape), "data": y.flatten().tolist()}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("listening", srv.server_address[1])
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
