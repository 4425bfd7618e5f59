// Package gramine issues SGX evidence from inside a Gramine enclave through
// its /dev/attestation pseudo-filesystem:
//
//	attestation_type   "dcap" when the manifest sets
//	                   sgx.remote_attestation = "dcap" ("none" when disabled)
//	user_report_data   write 64 bytes to bind them into the next quote
//	quote              read the SGX quote over the last user_report_data
//
// Evidence.TEE is attest.SGX, Evidence.Quote the DCAP (ECDSA) quote;
// Collateral is left empty for the verifier to fetch or cache.
package gramine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/internal/explain"
)

// DefaultRoot is where Gramine mounts its attestation pseudo-filesystem.
const DefaultRoot = "/dev/attestation"

// SGX quote v3 layout (Intel SGX ECDSA Quote Library API): a 48-byte header,
// a 384-byte ISV enclave report body whose last 64 bytes are the report data,
// then the signature data length.
const (
	quoteHeaderSize    = 48
	reportBodySize     = 384
	reportDataOffset   = quoteHeaderSize + 320
	minQuoteSize       = quoteHeaderSize + reportBodySize + 4
	maxQuoteSize       = 1 << 20
	quoteVersion       = 3
	teeTypeSGX         = 0
	reportDataSize     = 64
	attestationTypeMax = 64
)

// Issuer implements attest.Issuer inside Gramine.
type Issuer struct {
	// Root is the pseudo-filesystem's path; empty means DefaultRoot.
	Root string
}

var _ attest.Issuer = (*Issuer)(nil)

// mu serializes write-then-read of user_report_data and quote: Gramine keeps
// one user_report_data per process.
var mu sync.Mutex

func (i *Issuer) root() string {
	if i.Root == "" {
		return DefaultRoot
	}
	return i.Root
}

// AttestationType reads attestation_type ("dcap", "epid" or "none").
func (i *Issuer) AttestationType() (string, error) {
	p := filepath.Join(i.root(), "attestation_type")
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", explain.Errorf(err, "gramine: %s does not exist: not running inside Gramine (or Gramine too old)", p)
		}
		return "", fmt.Errorf("gramine: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, attestationTypeMax))
	if err != nil {
		return "", fmt.Errorf("gramine: reading %s: %w", p, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Issue implements attest.Issuer: it checks that DCAP attestation is
// enabled, writes reportData (at most 64 bytes, zero padded) to
// user_report_data, reads the quote and checks that it is an SGX v3 quote
// carrying exactly that report data.
func (i *Issuer) Issue(ctx context.Context, reportData []byte) (*attest.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gramine: %w", err)
	}
	if len(reportData) > reportDataSize {
		return nil, fmt.Errorf("gramine: report data is %d bytes, at most %d allowed", len(reportData), reportDataSize)
	}
	typ, err := i.AttestationType()
	if err != nil {
		return nil, err
	}
	switch typ {
	case "dcap":
	case "none":
		return nil, errors.New(`gramine: remote attestation is disabled in the manifest (attestation_type "none"; set sgx.remote_attestation = "dcap")`)
	case "epid":
		return nil, errors.New(`gramine: attestation_type is "epid"; teeml supports DCAP only (set sgx.remote_attestation = "dcap")`)
	default:
		return nil, fmt.Errorf("gramine: unknown attestation_type %q, want \"dcap\"", typ)
	}
	rd := make([]byte, reportDataSize)
	copy(rd, reportData)

	mu.Lock()
	defer mu.Unlock()
	urd := filepath.Join(i.root(), "user_report_data")
	f, err := os.OpenFile(urd, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("gramine: %w", err)
	}
	n, err := f.Write(rd)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("gramine: writing %s: %w", urd, err)
	}
	if n != reportDataSize {
		return nil, fmt.Errorf("gramine: wrote %d of %d bytes to %s", n, reportDataSize, urd)
	}
	qp := filepath.Join(i.root(), "quote")
	qf, err := os.Open(qp)
	if err != nil {
		return nil, fmt.Errorf("gramine: %w", err)
	}
	quote, err := io.ReadAll(io.LimitReader(qf, maxQuoteSize+1))
	qf.Close()
	if err != nil {
		return nil, fmt.Errorf("gramine: reading %s: %w", qp, err)
	}
	if err := checkQuote(quote, rd); err != nil {
		return nil, err
	}
	return &attest.Evidence{TEE: attest.SGX, Quote: quote}, nil
}

// checkQuote makes sure the quote is an SGX v3 quote over rd, catching a
// stale quote or a pseudo-file that ignored the write.
func checkQuote(q, rd []byte) error {
	switch {
	case len(q) == 0:
		return errors.New("gramine: quote is empty")
	case len(q) > maxQuoteSize:
		return fmt.Errorf("gramine: quote is over %d bytes", maxQuoteSize)
	case len(q) < minQuoteSize:
		return fmt.Errorf("gramine: quote is %d bytes, shorter than an SGX quote (%d)", len(q), minQuoteSize)
	}
	if v := binary.LittleEndian.Uint16(q[0:]); v != quoteVersion {
		return fmt.Errorf("gramine: quote version %d, want %d", v, quoteVersion)
	}
	if t := binary.LittleEndian.Uint32(q[4:]); t != teeTypeSGX {
		return fmt.Errorf("gramine: quote TEE type %#x, want SGX (0)", t)
	}
	if sigLen := binary.LittleEndian.Uint32(q[quoteHeaderSize+reportBodySize:]); uint64(sigLen) != uint64(len(q)-minQuoteSize) {
		return fmt.Errorf("gramine: quote signature data length %d does not match the %d bytes after the report", sigLen, len(q)-minQuoteSize)
	}
	if got := q[reportDataOffset : reportDataOffset+reportDataSize]; !bytes.Equal(got, rd) {
		return fmt.Errorf("gramine: quote report data %x is not the %x just written (stale quote?)", got, rd)
	}
	return nil
}
