// Package sealedparquet writes and reads Parquet files with Parquet modular
// encryption (AES-GCM, encrypted footer) under data keys from a
// sealed.KeySource: the footer and every column get their own fresh data
// key, and each key's metadata in the file names the key ID and carries the
// wrapped data key, so a reader asks its key source (the attested key broker,
// or a simulation key file) to unwrap exactly the keys it needs.
//
// Encrypted files are read serially (ArrowReadProperties.Parallel = false):
// arrow-go's parallel column reader shares decryptors between goroutines.
//
// arrow-go reports decryption problems by panicking; this package recovers
// them at its API boundary and returns one-line errors naming the footer or
// column and the key.
package sealedparquet

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/teeml/teeml/sealed"
)

// keyMeta is the key metadata stored in the file for the footer and each
// column: which key-encryption key, and the wrapped data key.
type keyMeta struct {
	V       int    `json:"v"`
	KeyID   string `json:"key_id"`
	Wrapped string `json:"wrapped"` // base64
}

const keyMetaVersion = 1

func encodeKeyMeta(keyID string, wrapped []byte) string {
	b, _ := json.Marshal(keyMeta{V: keyMetaVersion, KeyID: keyID, Wrapped: base64.StdEncoding.EncodeToString(wrapped)})
	return string(b)
}

func decodeKeyMeta(b []byte) (*keyMeta, []byte, error) {
	var m keyMeta
	if len(b) > 8192 {
		return nil, nil, fmt.Errorf("key metadata is %d bytes", len(b))
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, fmt.Errorf("key metadata is not teeml's (%w)", err)
	}
	if m.V != keyMetaVersion {
		return nil, nil, fmt.Errorf("key metadata version %d, want %d", m.V, keyMetaVersion)
	}
	if err := sealed.ValidKeyID(m.KeyID); err != nil {
		return nil, nil, fmt.Errorf("key metadata key ID %q: %w", m.KeyID, err)
	}
	w, err := base64.StdEncoding.DecodeString(m.Wrapped)
	if err != nil || len(w) == 0 {
		return nil, nil, fmt.Errorf("key metadata for %q: bad wrapped key", m.KeyID)
	}
	return &m, w, nil
}

// Keys says which key ID protects what. Every column is encrypted; a column
// not in Columns uses Default.
type Keys struct {
	Footer  string            // key ID for the footer (default: Default)
	Default string            // key ID for columns not listed
	Columns map[string]string // column path -> key ID
}

func (k Keys) footer() string {
	if k.Footer != "" {
		return k.Footer
	}
	return k.Default
}

// EncryptionProperties draws fresh data keys from ks for the footer and each
// column of sc and returns Parquet file encryption properties with an
// encrypted footer (AES-GCM for all modules).
func EncryptionProperties(ctx context.Context, ks sealed.KeySource, sc *arrow.Schema, keys Keys) (*parquet.FileEncryptionProperties, error) {
	if keys.footer() == "" {
		return nil, errors.New("parquet encryption: no key ID for the footer")
	}
	for col := range keys.Columns {
		if sc.FieldIndices(col) == nil {
			return nil, fmt.Errorf("parquet encryption: key for column %q, which the data does not have", col)
		}
	}
	fk, fw, err := ks.NewDataKey(ctx, keys.footer())
	if err != nil {
		return nil, fmt.Errorf("parquet encryption: footer data key: %w", err)
	}
	cols := parquet.ColumnPathToEncryptionPropsMap{}
	for _, f := range sc.Fields() {
		id := keys.Default
		if c, ok := keys.Columns[f.Name]; ok {
			id = c
		}
		if id == "" {
			return nil, fmt.Errorf("parquet encryption: no key ID for column %q", f.Name)
		}
		k, w, err := ks.NewDataKey(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("parquet encryption: column %q data key: %w", f.Name, err)
		}
		cols[f.Name] = parquet.NewColumnEncryptionProperties(f.Name, parquet.WithKey(string(k)), parquet.WithKeyMetadata(encodeKeyMeta(id, w)))
		clear(k)
	}
	props := parquet.NewFileEncryptionProperties(string(fk),
		parquet.WithFooterKeyMetadata(encodeKeyMeta(keys.footer(), fw)),
		parquet.WithEncryptedColumns(cols),
		parquet.WithAlg(parquet.AesGcm))
	clear(fk)
	return props, nil
}

// retriever unwraps keys for arrow-go's decryptor. arrow-go's interface has no
// error return, so failures are remembered here and reported after the panic
// that an empty key causes is recovered.
type retriever struct {
	ctx context.Context
	ks  sealed.KeySource
	mu  sync.Mutex
	err error
}

func (r *retriever) GetKey(meta []byte) string {
	m, wrapped, err := decodeKeyMeta(meta)
	if err == nil {
		var k []byte
		if k, err = r.ks.Unwrap(r.ctx, m.KeyID, wrapped); err == nil {
			return string(k)
		}
	}
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
	return ""
}

func (r *retriever) lastErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Reader is an open Parquet file, encrypted or not.
type Reader struct {
	closer    io.Closer
	pf        *file.Reader
	fr        *pqarrow.FileReader
	ret       *retriever
	Encrypted bool // modular encryption (encrypted footer)
}

// ErrAuthentication (errors.Is) is a footer or column chunk whose AES-GCM
// tag did not verify: the file was modified, or the data key is wrong. A
// key that could not be obtained at all is a different error.
var ErrAuthentication = errors.New("failed authentication")

// guard turns arrow-go panics into errors that name what failed.
func (r *retriever) guard(what string, err *error) {
	if p := recover(); p != nil {
		msg := fmt.Sprint(p)
		if strings.HasPrefix(msg, "hidden column exception, path=") {
			what = fmt.Sprintf("column %q", strings.TrimPrefix(msg, "hidden column exception, path="))
			msg = "no key"
		}
		if r != nil {
			if kerr := r.lastErr(); kerr != nil {
				*err = fmt.Errorf("parquet: %s: %w", what, kerr)
				return
			}
		}
		if strings.Contains(msg, "message authentication failed") {
			*err = fmt.Errorf("parquet: %s: %w (file modified, or wrong data key)", what, ErrAuthentication)
			return
		}
		*err = fmt.Errorf("parquet: %s: %s", what, msg)
	}
}

// footerMagic returns the file's magic, PAR1 (plaintext footer) or PARE
// (encrypted footer), the footer length and the file size. Both magics are
// checked strictly: the file must start and end with the same one of the
// two. Neither is covered by AES-GCM (no Parquet module includes them), so
// this check is what refuses a file whose leading magic was changed —
// arrow-go reads only the trailing one.
func footerMagic(r parquet.ReaderAtSeeker, name string) (string, int64, int64, error) {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return "", 0, 0, err
	}
	if size < 12 {
		return "", 0, 0, fmt.Errorf("parquet: %s: %d bytes, too short for Parquet", name, size)
	}
	b := make([]byte, 8)
	if _, err := r.ReadAt(b, size-8); err != nil {
		return "", 0, 0, err
	}
	tail := string(b[4:])
	if tail != "PAR1" && tail != "PARE" {
		return "", 0, 0, fmt.Errorf("parquet: %s: footer magic %q, want PAR1 or PARE", name, tail)
	}
	head := make([]byte, 4)
	if _, err := r.ReadAt(head, 0); err != nil {
		return "", 0, 0, err
	}
	if string(head) != tail {
		return "", 0, 0, fmt.Errorf("parquet: %s: leading magic %q does not match the footer magic %q (file modified)", name, head, tail)
	}
	return tail, int64(binary.LittleEndian.Uint32(b[:4])), size, nil
}

// Magic reports whether head, a file's first bytes, starts with a Parquet
// magic: PAR1 (plaintext footer) or PARE (encrypted footer).
func Magic(head []byte) bool {
	return len(head) >= 4 && (string(head[:4]) == "PAR1" || string(head[:4]) == "PARE")
}

// Open opens a Parquet file. Files with an encrypted footer need ks; plaintext
// Parquet opens without one (check Encrypted if encryption is required).
func Open(ctx context.Context, path string, ks sealed.KeySource) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	rd, err := OpenReader(ctx, f, path, ks)
	if err != nil {
		f.Close()
		return nil, err
	}
	rd.closer = f
	return rd, nil
}

// OpenReader is Open for any ReaderAt+Seeker (name is used in errors).
func OpenReader(ctx context.Context, f parquet.ReaderAtSeeker, name string, ks sealed.KeySource) (rd *Reader, err error) {
	magic, _, _, err := footerMagic(f, name)
	if err != nil {
		return nil, err
	}
	rd = &Reader{}
	props := parquet.NewReaderProperties(memory.DefaultAllocator)
	switch magic {
	case "PARE":
		if ks == nil {
			return nil, fmt.Errorf("parquet: %s has an encrypted footer: a key source is needed", name)
		}
		rd.Encrypted = true
		rd.ret = &retriever{ctx: ctx, ks: ks}
		props.FileDecryptProps = parquet.NewFileDecryptionProperties(parquet.WithKeyRetriever(rd.ret))
	case "PAR1":
	default:
		return nil, fmt.Errorf("parquet: %s: footer magic %q, want PAR1 or PARE", name, magic)
	}
	defer rd.ret.guard("footer", &err)
	rd.pf, err = file.NewParquetReader(f, file.WithReadProps(props))
	if err != nil {
		if kerr := rd.ret.lastErrOrNil(); kerr != nil {
			return nil, fmt.Errorf("parquet: footer: %w", kerr)
		}
		if strings.Contains(err.Error(), "message authentication failed") {
			return nil, fmt.Errorf("parquet: %s: footer %w (file modified, or wrong footer key)", name, ErrAuthentication)
		}
		return nil, fmt.Errorf("parquet: %s: %w", name, err)
	}
	// Serial reads: the parallel reader races on shared decryptors.
	rd.fr, err = pqarrow.NewFileReader(rd.pf, pqarrow.ArrowReadProperties{Parallel: false, BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("parquet: %s: %w", name, err)
	}
	return rd, nil
}

// Close closes the file opened by Open.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// NumRows is the number of rows in the file.
func (r *Reader) NumRows() int64 { return r.pf.NumRows() }

// Schema is the file's Arrow schema.
func (r *Reader) Schema() (*arrow.Schema, error) { return r.fr.Schema() }

// ReadTable reads the whole file, one column at a time, so a failure names
// its column. The caller releases the table.
func (r *Reader) ReadTable(ctx context.Context) (tbl arrow.Table, err error) {
	sc, err := r.fr.Schema()
	if err != nil {
		return nil, err
	}
	cols := make([]arrow.Column, 0, sc.NumFields())
	defer func() {
		if err != nil {
			for i := range cols {
				cols[i].Release()
			}
		}
	}()
	for i, fld := range sc.Fields() {
		t, err := r.readColumn(ctx, i, fld.Name)
		if err != nil {
			return nil, err
		}
		c := t.Column(0)
		c.Retain()
		t.Release()
		cols = append(cols, *c)
	}
	return array.NewTable(sc, cols, r.NumRows()), nil
}

func (r *Reader) readColumn(ctx context.Context, i int, name string) (t arrow.Table, err error) {
	r.ret.reset()
	defer r.ret.guard(fmt.Sprintf("column %q", name), &err)
	rgs := make([]int, r.pf.NumRowGroups())
	for j := range rgs {
		rgs[j] = j
	}
	t, err = r.fr.ReadRowGroups(ctx, []int{i}, rgs)
	if err != nil {
		if kerr := r.ret.lastErrOrNil(); kerr != nil {
			return nil, fmt.Errorf("parquet: column %q: %w", name, kerr)
		}
		return nil, fmt.Errorf("parquet: column %q: %w", name, err)
	}
	return t, nil
}

// reset forgets the last failure so it is not blamed on the next column.
func (r *retriever) reset() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.err = nil
	r.mu.Unlock()
}

func (r *retriever) lastErrOrNil() error {
	if r == nil {
		return nil
	}
	return r.lastErr()
}

// RecordReader streams the file in record batches (serially).
func (r *Reader) RecordReader(ctx context.Context) (rr pqarrow.RecordReader, err error) {
	defer r.ret.guard("columns", &err)
	return r.fr.GetRecordReader(ctx, nil, nil)
}

// ColumnKey describes how one column is protected.
type ColumnKey struct {
	Column    string `json:"column"`
	Encrypted bool   `json:"encrypted"`
	KeyID     string `json:"key_id,omitempty"`
	KeyError  string `json:"key_error,omitempty"` // the key source refused this column's key
}

// Info describes a Parquet file's protection.
type Info struct {
	Encrypted      bool        `json:"encrypted"`
	FooterKeyID    string      `json:"footer_key_id,omitempty"`
	Algorithm      string      `json:"algorithm,omitempty"`
	FooterDecoded  bool        `json:"footer_decrypted"`
	Rows           int64       `json:"rows,omitempty"`
	RowGroups      int         `json:"row_groups,omitempty"`
	Columns        []ColumnKey `json:"columns,omitempty"`
	FooterLenBytes int64       `json:"footer_bytes"`
}

func algName(a parquet.Cipher) string {
	switch a {
	case parquet.AesGcm:
		return "AES_GCM_V1 (Parquet modular encryption)"
	case parquet.AesCtr:
		return "AES_GCM_CTR_V1 (Parquet modular encryption)"
	}
	return fmt.Sprintf("cipher %d", a)
}

// Inspect reports the footer's encryption without decrypting any data. With
// ks == nil only the plaintext crypto metadata of an encrypted footer is
// shown (algorithm, footer key ID); with a key source the footer is
// decrypted (column data is not) to list columns, their key IDs and rows.
func Inspect(ctx context.Context, path string, ks sealed.KeySource) (info *Info, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	magic, flen, size, err := footerMagic(f, path)
	if err != nil {
		return nil, err
	}
	if flen <= 0 || flen > size-12 {
		return nil, fmt.Errorf("parquet: %s: footer length %d does not fit the file", path, flen)
	}
	info = &Info{FooterLenBytes: flen}
	if magic == "PARE" {
		info.Encrypted = true
		buf := make([]byte, flen)
		if _, err := f.ReadAt(buf, size-8-flen); err != nil {
			return nil, err
		}
		cm, err := parseCryptoMeta(buf)
		if err != nil {
			return nil, fmt.Errorf("parquet: %s: crypto metadata: %w", path, err)
		}
		info.Algorithm = algName(cm.EncryptionAlgorithm().Algo)
		if m, _, err := decodeKeyMeta(cm.KeyMetadata()); err == nil {
			info.FooterKeyID = m.KeyID
		}
		if ks == nil {
			return info, nil
		}
	} else if magic != "PAR1" {
		return nil, fmt.Errorf("parquet: %s: footer magic %q, want PAR1 or PARE", path, magic)
	}
	rd, err := Open(ctx, path, ks)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	md := rd.pf.MetaData()
	info.FooterDecoded = true
	info.Rows, info.RowGroups = md.NumRows, md.NumRowGroups()
	for i := 0; i < md.Schema.NumColumns(); i++ {
		info.Columns = append(info.Columns, rd.columnKey(md, i, info.FooterKeyID))
	}
	return info, nil
}

// columnKey reports column i's protection. arrow-go decrypts a column's
// metadata with the column's key when it is first touched and panics if the
// key source refuses the key; that is reported in KeyError, not as a crash.
func (rd *Reader) columnKey(md *metadata.FileMetaData, i int, footerKeyID string) (ck ColumnKey) {
	ck.Column = md.Schema.Column(i).Path()
	if md.NumRowGroups() == 0 {
		return ck
	}
	rd.ret.reset()
	defer func() {
		if p := recover(); p != nil {
			ck.Encrypted = true
			ck.KeyError = fmt.Sprint(p)
			var ke *sealed.KeyError
			if kerr := rd.ret.lastErrOrNil(); errors.As(kerr, &ke) {
				ck.KeyID, ck.KeyError = ke.KeyID, ke.Reason
			}
		}
	}()
	cc, err := md.RowGroup(0).ColumnChunk(i)
	if err != nil {
		ck.KeyError = err.Error()
		return ck
	}
	if cmd := cc.CryptoMetadata(); cmd != nil {
		ck.Encrypted = true
		if ek := cmd.GetENCRYPTION_WITH_COLUMN_KEY(); ek != nil {
			if m, _, err := decodeKeyMeta(ek.GetKeyMetadata()); err == nil {
				ck.KeyID = m.KeyID
			}
		} else {
			ck.KeyID = footerKeyID + " (footer key)"
		}
	}
	return ck
}

// parseCryptoMeta parses the plaintext FileCryptoMetaData that starts an
// encrypted footer; arrow-go's thrift decoder can panic on garbage.
func parseCryptoMeta(b []byte) (cm metadata.FileCryptoMetadata, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed: %v", p)
		}
	}()
	return metadata.NewFileCryptoMetaData(b)
}
