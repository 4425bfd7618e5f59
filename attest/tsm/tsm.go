// Package tsm issues TDX and SEV-SNP evidence through Linux's configfs-tsm
// report interface (/sys/kernel/config/tsm/report, kernel 6.7+, see
// Documentation/ABI/testing/configfs-tsm-report):
//
//  1. mkdir report/<fresh name>: the kernel populates the entry's attributes;
//  2. read provider ("tdx_guest" → attest.TDX, "sev_guest" → attest.SNP) and
//     generation;
//  3. write privlevel (optional, SEV-SNP VMPL) and inblob (64 bytes);
//  4. read outblob (the TDX quote or the raw SNP report) and auxblob when
//     present (for sev_guest the certificate table with the VCEK, which
//     becomes Evidence.Collateral);
//  5. read generation again: per the kernel ABI it must have grown by
//     exactly the number of writes, otherwise another writer interfered and
//     the outblob may not be over our inblob; the request is retried in a
//     fresh entry;
//  6. rmdir the entry.
//
// The outblob is also checked to carry the report data just written.
package tsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/teeml/teeml/attest"
)

// DefaultRoot is the configfs-tsm report directory.
const DefaultRoot = "/sys/kernel/config/tsm/report"

// DefaultAttempts is how many fresh report entries Issue tries when the
// generation check detects interference.
const DefaultAttempts = 3

const (
	inblobSize    = 64
	snpReportSize = 0x4A0
	snpRDOffset   = 0x50
	tdxTEEType    = 0x81
	// TDX quote v4: 48-byte header then the TD report body, whose report
	// data is at offset 520. v5 inserts a 2-byte body type and a 4-byte
	// body size before the body.
	tdxV4RDOffset = 48 + 520
	tdxV5RDOffset = 48 + 6 + 520
	maxPrivLevel  = 3
)

// Providers maps configfs-tsm provider names to TEEs.
var Providers = map[string]attest.TEE{
	"tdx_guest": attest.TDX,
	"sev_guest": attest.SNP,
}

// Issuer implements attest.Issuer through configfs-tsm.
type Issuer struct {
	// Root is the report directory; empty means DefaultRoot.
	Root string
	// PrivLevel, when set, is written to privlevel (SEV-SNP VMPL 0..3)
	// before inblob.
	PrivLevel *uint8
	// Attempts bounds the retries on generation mismatch; 0 means
	// DefaultAttempts.
	Attempts int

	fs fileSystem // nil means the real file system; tests substitute a fake
}

var _ attest.Issuer = (*Issuer)(nil)

// fileSystem is the part of configfs the issuer touches.
type fileSystem interface {
	Mkdir(path string) error
	Rmdir(path string) error
	ReadFile(path string) ([]byte, error)
	// WriteFile writes to an existing attribute; it never creates one.
	WriteFile(path string, data []byte) error
}

type osFS struct{}

func (osFS) Mkdir(p string) error               { return os.Mkdir(p, 0o700) }
func (osFS) Rmdir(p string) error               { return os.Remove(p) }
func (osFS) ReadFile(p string) ([]byte, error)  { return os.ReadFile(p) }
func (osFS) WriteFile(p string, b []byte) error { return writeExisting(p, b) }

func writeExisting(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	n, err := f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != len(b) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	return err
}

func (i *Issuer) root() string {
	if i.Root == "" {
		return DefaultRoot
	}
	return i.Root
}

func (i *Issuer) fsys() fileSystem {
	if i.fs == nil {
		return osFS{}
	}
	return i.fs
}

// errInterfered marks a generation mismatch, which is retried.
var errInterfered = errors.New("generation mismatch")

// Issue implements attest.Issuer: reportData (at most 64 bytes, zero padded)
// becomes the inblob.
func (i *Issuer) Issue(ctx context.Context, reportData []byte) (*attest.Evidence, error) {
	if len(reportData) > inblobSize {
		return nil, fmt.Errorf("tsm: report data is %d bytes, at most %d allowed", len(reportData), inblobSize)
	}
	if i.PrivLevel != nil && *i.PrivLevel > maxPrivLevel {
		return nil, fmt.Errorf("tsm: privlevel %d out of range 0..%d", *i.PrivLevel, maxPrivLevel)
	}
	if st, err := os.Stat(i.root()); err != nil || !st.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("tsm: %s is not a directory: configfs-tsm unavailable (needs Linux 6.7+ in a TDX or SEV-SNP guest with configfs mounted)", i.root())
		}
		return nil, fmt.Errorf("tsm: %w", err)
	}
	inblob := make([]byte, inblobSize)
	copy(inblob, reportData)
	attempts := i.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	var last error
	for n := 0; n < attempts; n++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("tsm: %w", err)
		}
		ev, err := i.once(inblob)
		if err == nil || !errors.Is(err, errInterfered) {
			return ev, err
		}
		last = err
	}
	return nil, fmt.Errorf("%w; gave up after %d attempts", last, attempts)
}

func (i *Issuer) once(inblob []byte) (ev *attest.Evidence, err error) {
	fsys := i.fsys()
	var nb [8]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, fmt.Errorf("tsm: entry name: %w", err)
	}
	dir := filepath.Join(i.root(), "teeml-"+hex.EncodeToString(nb[:]))
	if err := fsys.Mkdir(dir); err != nil {
		return nil, fmt.Errorf("tsm: creating report entry: %w", err)
	}
	defer func() {
		if rerr := fsys.Rmdir(dir); rerr != nil && err == nil {
			ev, err = nil, fmt.Errorf("tsm: removing report entry: %w", rerr)
		}
	}()
	attr := func(name string) string { return filepath.Join(dir, name) }

	pb, err := fsys.ReadFile(attr("provider"))
	if err != nil {
		return nil, fmt.Errorf("tsm: reading provider: %w", err)
	}
	provider := strings.TrimSpace(string(pb))
	tee, ok := Providers[provider]
	if !ok {
		return nil, fmt.Errorf("tsm: unsupported provider %q (supported: tdx_guest, sev_guest)", provider)
	}
	gen0, err := readGeneration(fsys, attr("generation"))
	if err != nil {
		return nil, err
	}
	writes := uint64(0)
	if i.PrivLevel != nil {
		if err := fsys.WriteFile(attr("privlevel"), []byte(strconv.Itoa(int(*i.PrivLevel)))); err != nil {
			return nil, fmt.Errorf("tsm: writing privlevel: %w", err)
		}
		writes++
	}
	if err := fsys.WriteFile(attr("inblob"), inblob); err != nil {
		return nil, fmt.Errorf("tsm: writing inblob: %w", err)
	}
	writes++
	out, err := fsys.ReadFile(attr("outblob"))
	if err != nil {
		return nil, fmt.Errorf("tsm: reading outblob from %s: %w", provider, err)
	}
	aux, err := fsys.ReadFile(attr("auxblob"))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("tsm: reading auxblob: %w", err)
		}
		aux = nil
	}
	gen1, err := readGeneration(fsys, attr("generation"))
	if err != nil {
		return nil, err
	}
	if gen1 != gen0+writes {
		return nil, fmt.Errorf("tsm: generation went from %d to %d over %d writes: another writer used the report entry (%w)", gen0, gen1, writes, errInterfered)
	}
	if err := checkOutblob(tee, out, inblob); err != nil {
		return nil, err
	}
	ev = &attest.Evidence{TEE: tee, Quote: out}
	if tee == attest.SNP && len(aux) > 0 {
		ev.Collateral = aux
	}
	return ev, nil
}

func readGeneration(fsys fileSystem, p string) (uint64, error) {
	b, err := fsys.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("tsm: reading generation: %w", err)
	}
	g, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("tsm: generation %q is not a number", strings.TrimSpace(string(b)))
	}
	return g, nil
}

// checkOutblob makes sure the outblob has the provider's shape and carries
// inblob as its report data.
func checkOutblob(tee attest.TEE, out, inblob []byte) error {
	if len(out) == 0 {
		return fmt.Errorf("tsm: %s outblob is empty", tee)
	}
	var rd []byte
	switch tee {
	case attest.SNP:
		if len(out) != snpReportSize {
			return fmt.Errorf("tsm: sev-snp outblob is %d bytes, want a %d-byte attestation report", len(out), snpReportSize)
		}
		rd = out[snpRDOffset : snpRDOffset+inblobSize]
	case attest.TDX:
		if len(out) < tdxV5RDOffset+inblobSize {
			return fmt.Errorf("tsm: tdx outblob is %d bytes, too short for a TDX quote", len(out))
		}
		version := binary.LittleEndian.Uint16(out)
		if t := binary.LittleEndian.Uint32(out[4:]); t != tdxTEEType {
			return fmt.Errorf("tsm: tdx outblob has TEE type %#x, want %#x", t, tdxTEEType)
		}
		switch version {
		case 4:
			rd = out[tdxV4RDOffset : tdxV4RDOffset+inblobSize]
		case 5:
			rd = out[tdxV5RDOffset : tdxV5RDOffset+inblobSize]
		default:
			return fmt.Errorf("tsm: tdx outblob is a version %d quote, want 4 or 5", version)
		}
	}
	if !bytes.Equal(rd, inblob) {
		return fmt.Errorf("tsm: %s outblob report data %x is not the inblob %x just written", tee, rd, inblob)
	}
	return nil
}
