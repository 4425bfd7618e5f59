package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/pem"
	"testing"
)

func splitPEM(t *testing.T, b []byte) []*pem.Block {
	t.Helper()
	var out []*pem.Block
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, blk)
	}
}

func joinPEM(t *testing.T, blocks []*pem.Block) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, blk := range blocks {
		if err := pem.Encode(&b, blk); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// resign signs the first four blocks again with the CA's signing key.
func (e *env) resign(t *testing.T, blocks []*pem.Block) []byte {
	t.Helper()
	digest, _ := bundleDigest(e.ca.signingKey.Curve, bundleMessage(blocks[:4]))
	sig, err := ecdsa.SignASN1(rand.Reader, e.ca.signingKey, digest)
	if err != nil {
		t.Fatal(err)
	}
	blocks[4].Bytes = sig
	return joinPEM(t, blocks)
}
