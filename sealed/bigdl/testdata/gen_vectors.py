#!/usr/bin/python3
"""Generate BigDL PPML .cbc test vectors for teeml's migration reader.

Written for teeml from the published description of BigDL PPML's
BigDLEncrypt file layout (not copied from BigDL):

  400-byte header: int32 BE len(encrypted data key), int32 BE len(IV) (16),
                   encrypted data key (UTF-8), IV, then 0x80 bytes up to 400
  body:            AES-128-CBC, PKCS#5 padding, key = data key bytes [16:32]
  trailer:         HMAC-SHA256 over the body ciphertext, key = data key bytes [0:16]

The data key is BigDL's plaintext data key string (its bytes are used as is).
Everything is derived from fixed labels so that re-running reproduces the
committed files byte for byte. Needs python3-cryptography.
"""
import hashlib
import hmac
import os
import struct
import base64

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))


def det(label, n):
    return hashlib.sha256(b"teeml bigdl test vector " + label.encode()).digest()[:n]


def bigdl_encrypt(data_key, encrypted_data_key, iv, plaintext):
    sign_key, enc_key = data_key[:16], data_key[16:32]
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ct = enc.update(padded) + enc.finalize()
    tag = hmac.new(sign_key, ct, hashlib.sha256).digest()
    header = struct.pack(">ii", len(encrypted_data_key), len(iv)) + encrypted_data_key + iv
    assert len(header) <= 400
    header += b"\x80" * (400 - len(header))
    return header + ct + tag


def main():
    # BigDL hands out data keys as base64 strings; the first 32 bytes of the
    # string are the HMAC and AES keys.
    data_key = base64.b64encode(det("data key", 32))
    encrypted_data_key = base64.b64encode(det("wrapped data key", 48))
    with open(os.path.join(HERE, "datakey.txt"), "wb") as f:
        f.write(data_key + b"\n")
    csv = b"id,age,income,label\n" + b"".join(
        b"%d,%d,%d.%02d,%d\n" % (i, 20 + i % 50, 1000 * i, i % 100, i % 2) for i in range(200))
    vectors = {
        "people.csv": csv,                       # several KB, many CBC blocks
        "one.bin": b"x",                         # one byte: one padded block
        "block.bin": bytes(range(32)),           # block-aligned: a full padding block
    }
    for name, pt in vectors.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(pt)
        with open(os.path.join(HERE, name + ".cbc"), "wb") as f:
            f.write(bigdl_encrypt(data_key, encrypted_data_key, det("iv " + name, 16), pt))


if __name__ == "__main__":
    main()
