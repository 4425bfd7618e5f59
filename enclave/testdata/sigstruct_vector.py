#!/usr/bin/python3
"""Independent SIGSTRUCT maker and checker for enclave package tests.

Written from the Intel SDM SIGSTRUCT table, with no teeml code: offsets are
literals, the RSA signature comes from `openssl dgst -sha256 -sign`, and the
checks use plain integer arithmetic. Standard library only.

  sigstruct_vector.py make KEY.pem OUT.sig   # fixed test fields, signed by KEY
  sigstruct_vector.py check IN.sig           # verify, print fields as JSON
"""
import hashlib
import json
import struct
import subprocess
import sys

HEADER = bytes.fromhex('06000000e10000000000010000000000')
HEADER2 = bytes.fromhex('01010000600000006000000001000000')
# DER DigestInfo prefix for SHA-256 (RFC 8017, section 9.2, note 1).
SHA256_DIGEST_INFO = bytes.fromhex('3031300d060960864801650304020105000420')


def signing_data(b):
    return bytes(b[0:128]) + bytes(b[900:1028])


def pkcs1_v15_sha256(data, size):
    t = SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
    return b'\x00\x01' + b'\xff' * (size - len(t) - 3) + b'\x00' + t


def make(key, out):
    b = bytearray(1808)
    b[0:16] = HEADER
    struct.pack_into('<I', b, 16, 0)                        # vendor
    b[20:24] = bytes([0x15, 0x03, 0x24, 0x20])              # date 2024-03-15, BCD
    b[24:40] = HEADER2
    struct.pack_into('<I', b, 40, 0)                        # swdefined
    struct.pack_into('<I', b, 900, 0)                       # miscselect
    struct.pack_into('<I', b, 904, 0xffffffff)              # miscmask
    struct.pack_into('<QQ', b, 928, 0x6, 0x3)               # attributes: MODE64BIT|DEBUG, x87|SSE
    struct.pack_into('<QQ', b, 944, 0xffffffffffffffff, 0xfffffffffff9ff1b)  # attributemask
    b[960:992] = hashlib.sha256(b'teeml test enclave').digest()  # enclavehash
    struct.pack_into('<HH', b, 1024, 0x1234, 0x0507)        # isvprodid, isvsvn

    mod = subprocess.run(['openssl', 'rsa', '-in', key, '-noout', '-modulus'],
                         capture_output=True, check=True, text=True).stdout.strip()
    n = int(mod.split('=', 1)[1], 16)
    assert n.bit_length() == 3072, n.bit_length()
    b[128:512] = n.to_bytes(384, 'little')                  # modulus
    struct.pack_into('<I', b, 512, 3)                       # exponent

    sig = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', key],
                         input=signing_data(b), capture_output=True, check=True).stdout
    s = int.from_bytes(sig, 'big')
    assert pow(s, 3, n) == int.from_bytes(pkcs1_v15_sha256(signing_data(b), 384), 'big')
    q1 = s * s // n
    q2 = (s ** 3 - q1 * s * n) // n
    b[516:900] = s.to_bytes(384, 'little')                  # signature
    b[1040:1424] = q1.to_bytes(384, 'little')               # q1
    b[1424:1808] = q2.to_bytes(384, 'little')               # q2
    with open(out, 'wb') as f:
        f.write(b)


def check(path):
    with open(path, 'rb') as f:
        b = f.read()
    assert len(b) == 1808, len(b)
    assert b[0:16] == HEADER and b[24:40] == HEADER2
    n = int.from_bytes(b[128:512], 'little')
    e = struct.unpack_from('<I', b, 512)[0]
    s = int.from_bytes(b[516:900], 'little')
    q1 = int.from_bytes(b[1040:1424], 'little')
    q2 = int.from_bytes(b[1424:1808], 'little')
    verified = (e == 3 and n.bit_length() == 3072 and s < n
                and pow(s, 3, n) == int.from_bytes(pkcs1_v15_sha256(signing_data(b), 384), 'big')
                and q1 == s * s // n and q2 == (s ** 3 - q1 * s * n) // n)
    day, month, year = b[20], b[21], struct.unpack_from('<H', b, 22)[0]
    flags = struct.unpack_from('<Q', b, 928)[0]
    print(json.dumps({
        'verified': verified,
        'mr_enclave': b[960:992].hex(),
        'mr_signer': hashlib.sha256(b[128:512]).hexdigest(),
        'isv_prod_id': struct.unpack_from('<H', b, 1024)[0],
        'isv_svn': struct.unpack_from('<H', b, 1026)[0],
        'debug': bool(flags & 2),
        'date': f'{year:04x}-{month:02x}-{day:02x}',
    }, sort_keys=True))


if __name__ == '__main__':
    if sys.argv[1] == 'make':
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == 'check':
        check(sys.argv[2])
    else:
        sys.exit(f'unknown mode {sys.argv[1]}')
