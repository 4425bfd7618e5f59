package gramine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeml/teeml/attest"
)

// fakeQuote is an SGX v3 quote shape: header, report body with rd at the
// report-data offset, signature data length and sigLen bytes of signature.
func fakeQuote(rd []byte, sigLen int) []byte {
	q := make([]byte, minQuoteSize+sigLen)
	binary.LittleEndian.PutUint16(q[0:], 3) // version
	binary.LittleEndian.PutUint16(q[2:], 2) // ECDSA P-256 attestation key
	binary.LittleEndian.PutUint32(q[4:], 0) // TEE type SGX
	copy(q[quoteHeaderSize:], "isv report body")
	copy(q[reportDataOffset:], rd)
	binary.LittleEndian.PutUint32(q[quoteHeaderSize+reportBodySize:], uint32(sigLen))
	for i := minQuoteSize; i < len(q); i++ {
		q[i] = byte(i)
	}
	return q
}

func pad(b []byte) []byte {
	out := make([]byte, 64)
	copy(out, b)
	return out
}

// fakeDevAttestation lays out a directory like Gramine's /dev/attestation. A
// plain directory cannot react to the user_report_data write, so the quote
// is pre-populated for the report data the test will write.
func fakeDevAttestation(t *testing.T, typ string, quote []byte) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("attestation_type", []byte(typ))
	write("user_report_data", nil)
	write("quote", quote)
	return dir
}

func TestIssue(t *testing.T) {
	rd := []byte("channel-binding-hash")
	quote := fakeQuote(pad(rd), 1000)
	dir := fakeDevAttestation(t, "dcap", quote)
	ev, err := (&Issuer{Root: dir}).Issue(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if ev.TEE != attest.SGX || ev.Simulated || !bytes.Equal(ev.Quote, quote) || ev.Collateral != nil {
		t.Fatalf("evidence = %+v", ev)
	}
	written, err := os.ReadFile(filepath.Join(dir, "user_report_data"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(written, pad(rd)) {
		t.Fatalf("user_report_data = %x, want %x", written, pad(rd))
	}
	// A trailing newline in attestation_type is tolerated.
	dir = fakeDevAttestation(t, "dcap\n", fakeQuote(pad(nil), 0))
	if _, err := (&Issuer{Root: dir}).Issue(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestIssueErrors(t *testing.T) {
	rd := pad([]byte("x"))
	good := fakeQuote(rd, 10)
	badVersion := fakeQuote(rd, 10)
	binary.LittleEndian.PutUint16(badVersion, 4)
	tdxType := fakeQuote(rd, 10)
	binary.LittleEndian.PutUint32(tdxType[4:], 0x81)
	badSigLen := fakeQuote(rd, 10)
	binary.LittleEndian.PutUint32(badSigLen[quoteHeaderSize+reportBodySize:], 11)
	cases := []struct {
		name  string
		typ   string
		quote []byte
		rd    []byte
		setup func(dir string)
		want  string
	}{
		{"none", "none", good, rd[:1], nil, "remote attestation is disabled in the manifest"},
		{"epid", "epid", good, rd[:1], nil, `attestation_type is "epid"; teeml supports DCAP only`},
		{"unknown type", "sgx", good, rd[:1], nil, `unknown attestation_type "sgx"`},
		{"long report data", "dcap", good, make([]byte, 65), nil, "report data is 65 bytes, at most 64"},
		{"stale quote", "dcap", fakeQuote(pad([]byte("old")), 10), rd[:1], nil, "is not the 78"},
		{"empty quote", "dcap", nil, rd[:1], nil, "quote is empty"},
		{"short quote", "dcap", good[:minQuoteSize-1], rd[:1], nil, "shorter than an SGX quote"},
		{"version", "dcap", badVersion, rd[:1], nil, "quote version 4, want 3"},
		{"TDX quote", "dcap", tdxType, rd[:1], nil, "quote TEE type 0x81"},
		{"signature length", "dcap", badSigLen, rd[:1], nil, "signature data length 11"},
		{"no user_report_data", "dcap", good, rd[:1], func(dir string) { os.Remove(filepath.Join(dir, "user_report_data")) }, "user_report_data: no such file"},
		{"no quote", "dcap", good, rd[:1], func(dir string) { os.Remove(filepath.Join(dir, "quote")) }, "quote: no such file"},
		{"no attestation_type", "dcap", good, rd[:1], func(dir string) { os.Remove(filepath.Join(dir, "attestation_type")) }, "not running inside Gramine"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeDevAttestation(t, tc.typ, tc.quote)
			if tc.setup != nil {
				tc.setup(dir)
			}
			ev, err := (&Issuer{Root: dir}).Issue(context.Background(), tc.rd)
			if err == nil {
				t.Fatalf("issued %+v", ev)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gramine: ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q\nwant one line containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaultRoot(t *testing.T) {
	if _, err := os.Stat(DefaultRoot); err == nil {
		t.Skip("running inside Gramine")
	}
	_, err := (&Issuer{}).Issue(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "/dev/attestation/attestation_type does not exist: not running inside Gramine") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&Issuer{Root: t.TempDir()}).Issue(ctx, nil); err == nil {
		t.Fatal("issued with a canceled context")
	}
}

// TestConcurrentIssue runs issuers in parallel on one pseudo-filesystem; the
// package lock keeps each write/read pair together (run with -race).
func TestConcurrentIssue(t *testing.T) {
	rd := []byte("same")
	dir := fakeDevAttestation(t, "dcap", fakeQuote(pad(rd), 64))
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func() {
			_, err := (&Issuer{Root: dir}).Issue(context.Background(), rd)
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
