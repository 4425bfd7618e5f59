#!/usr/bin/python3
"""A plain Python client of teeml serve (TestPythonClientPinnedKey).

It cannot do RA-TLS, so it trusts the server's key pin printed by
`teeml attest verify-server` (sha256//<base64 of SHA-256 of the
SubjectPublicKeyInfo>, curl's --pinnedpubkey form): every connection is
checked against the pin right after its TLS handshake and before any byte of
a request is written. Then it walks the Open Inference Protocol v2 REST
endpoints (KServe's predict protocol v2) and checks each answer's shape as
the specification gives it; it prints one JSON object with the outputs.

usage: oip_client.py URL PIN TOKEN MODEL ROWS.json
Exit 3: the server's key does not match the pin (nothing was sent).
Exit 4: an answer does not follow the protocol.
Uses only Debian packages: python3-requests, python3-cryptography.
"""
import base64
import hashlib
import json
import ssl
import sys

import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool


class PinMismatch(Exception):
    pass


def spki_pin(der):
    cert = x509.load_der_x509_certificate(der)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def pinned_adapter(pin):
    class PinnedConnection(HTTPSConnection):
        def connect(self):
            super().connect()
            got = spki_pin(self.sock.getpeercert(binary_form=True))
            if got != pin:
                self.sock.close()
                raise PinMismatch("server key %s does not match the pin %s" % (got, pin))

    class PinnedPool(HTTPSConnectionPool):
        ConnectionCls = PinnedConnection

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            # The RA-TLS certificate is not under a web CA: trust is the pin.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            kwargs["ssl_context"] = ctx
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(self.poolmanager.pool_classes_by_scheme)
            self.poolmanager.pool_classes_by_scheme["https"] = PinnedPool

    return Adapter()


def need(cond, what):
    if not cond:
        print("protocol: " + what, file=sys.stderr)
        sys.exit(4)


def main():
    url, pin, token, model, rows_path = sys.argv[1:6]
    with open(rows_path) as f:
        rows = json.load(f)
    s = requests.Session()
    # No web-CA check (the pin is the trust): without verify=False, and
    # without ignoring REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE and proxies from
    # the environment, requests would ask urllib3 for one and refuse the
    # RA-TLS certificate.
    s.verify = False
    s.trust_env = False
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    s.mount("https://", pinned_adapter(pin))
    s.headers["Authorization"] = "Bearer " + token
    try:
        r = s.get(url + "/v2/health/live", timeout=30)
    except (PinMismatch, requests.exceptions.ConnectionError) as e:
        if "does not match the pin" in str(e):
            print("pin check failed before any request: %s" % e, file=sys.stderr)
            sys.exit(3)
        raise
    need(r.status_code == 200, "live: HTTP %d" % r.status_code)
    r = s.get(url + "/v2/health/ready", timeout=30)
    need(r.status_code == 200, "ready: HTTP %d" % r.status_code)

    # Server metadata: {"name": str, "version": str, "extensions": [str]}
    meta = s.get(url + "/v2", timeout=30).json()
    need(isinstance(meta.get("name"), str) and isinstance(meta.get("version"), str) and
         isinstance(meta.get("extensions"), list), "server metadata %r" % meta)
    # Model metadata: name, versions, platform, inputs/outputs of
    # {"name", "datatype", "shape"}.
    mm = s.get(url + "/v2/models/" + model, timeout=30).json()
    need(mm.get("name") == model and isinstance(mm.get("platform"), str), "model metadata %r" % mm)
    for t in mm.get("inputs", []) + mm.get("outputs", []):
        need(isinstance(t.get("name"), str) and isinstance(t.get("datatype"), str) and
             isinstance(t.get("shape"), list), "tensor metadata %r" % t)
    r = s.get(url + "/v2/models/" + model + "/ready", timeout=30)
    need(r.status_code == 200, "model ready: HTTP %d" % r.status_code)
    inp = mm["inputs"][0]

    # Inference request as in the specification's example: id, inputs with
    # name, shape, datatype and row-major data.
    req = {"id": "42", "inputs": [{"name": inp["name"], "shape": [len(rows), len(rows[0])],
                                   "datatype": "FP32", "data": rows}]}
    r = s.post(url + "/v2/models/" + model + "/infer", json=req, timeout=30)
    need(r.status_code == 200, "infer: HTTP %d %s" % (r.status_code, r.text))
    resp = r.json()
    need(resp.get("model_name") == model and resp.get("id") == "42", "infer response %r" % resp)
    out = resp["outputs"][0]
    need(out["shape"] == [len(rows), mm["outputs"][0]["shape"][-1]] and out["datatype"] == "FP32" and
         len(out["data"]) == out["shape"][0] * out["shape"][1], "output tensor %r" % out)

    # A malformed request: HTTP 400 with {"error": str}.
    bad = {"inputs": [{"name": inp["name"], "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}
    r = s.post(url + "/v2/models/" + model + "/infer", json=bad, timeout=30)
    err = r.json()
    need(r.status_code == 400 and isinstance(err.get("error"), str) and "\n" not in err["error"],
         "malformed request answered %d %r" % (r.status_code, err))

    n, k = out["shape"]
    print(json.dumps({"outputs": [out["data"][i * k:(i + 1) * k] for i in range(n)],
                      "server": meta, "error": err["error"]}))


if __name__ == "__main__":
    main()
