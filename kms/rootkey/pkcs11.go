package rootkey

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/teeml/teeml/internal/explain"
)

// PKCS11Config names an AES key inside a PKCS#11 token and how to log in.
// The PIN comes from an environment variable or a file, never from a
// command-line argument (which any local user can read from /proc).
type PKCS11Config struct {
	Module   string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	Token    string // token label
	Label    string // CKA_LABEL of the AES key
	PINEnv   string // environment variable holding the user PIN
	PINFile  string // file holding the user PIN (mode 0600 or stricter)
	Sessions int    // size of the session pool; 0 means DefaultPKCS11Sessions
}

// DefaultPKCS11Sessions is the default session pool size. A PKCS#11 session
// runs one operation at a time, so concurrent Wrap/Unwrap calls need a
// session each; the pool bounds how many the broker holds open on the token.
const DefaultPKCS11Sessions = 4

// ParsePKCS11URI parses a PKCS#11 key reference. It accepts the RFC 7512
// form, with path attributes token= and object= and query attributes
// module-path= and pin-source=file:PATH, e.g.
//
//	pkcs11:token=teeml;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/teeml/pin
//
// and the shorter teeml form with module=, label=, pin-env= and pin-file=,
// all separated by ';':
//
//	pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=teeml;label=root;pin-env=TEEML_HSM_PIN
//
// pin-value= is refused: a PIN in a URI ends up in shell history and in the
// process's command line.
func ParsePKCS11URI(uri string) (PKCS11Config, error) {
	rest, ok := strings.CutPrefix(uri, "pkcs11:")
	if !ok {
		return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: %q does not start with pkcs11:", uri)
	}
	var cfg PKCS11Config
	path, query, _ := strings.Cut(rest, "?")
	attrs := splitNonEmpty(path, ";")
	attrs = append(attrs, splitNonEmpty(query, "&")...)
	seen := map[string]bool{}
	for _, a := range attrs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: attribute %q has no '='", a)
		}
		v, err := url.PathUnescape(v)
		if err != nil {
			return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: attribute %s: %w", k, err)
		}
		k = strings.ToLower(k)
		if seen[k] {
			return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: attribute %s given twice", k)
		}
		seen[k] = true
		switch k {
		case "module", "module-path":
			cfg.Module = v
		case "token":
			cfg.Token = v
		case "label", "object":
			cfg.Label = v
		case "type":
			if v != "secret-key" {
				return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: type=%s: the root key is an AES secret-key", v)
			}
		case "pin-env":
			cfg.PINEnv = v
		case "pin-file":
			cfg.PINFile = v
		case "pin-source":
			// RFC 7512 pin-source is a URI; only local files make sense here.
			p, ok := strings.CutPrefix(v, "file:")
			if !ok {
				if !strings.HasPrefix(v, "/") {
					return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: pin-source=%s: want file:PATH", v)
				}
				p = v
			}
			cfg.PINFile = p
		case "pin-value":
			return PKCS11Config{}, errors.New("rootkey: pkcs11: pin-value is refused: give the PIN by pin-env=VAR or pin-file=PATH, never in the URI")
		case "sessions":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 256 {
				return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: sessions=%s: want an integer from 1 to 256", v)
			}
			cfg.Sessions = n
		default:
			return PKCS11Config{}, fmt.Errorf("rootkey: pkcs11: unknown attribute %q", k)
		}
	}
	return cfg, cfg.validate()
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c PKCS11Config) validate() error {
	switch {
	case c.Module == "":
		return errors.New("rootkey: pkcs11: no module (want module=PATH or module-path=PATH)")
	case c.Token == "":
		return errors.New("rootkey: pkcs11: no token label (want token=LABEL)")
	case c.Label == "":
		return errors.New("rootkey: pkcs11: no key label (want label=LABEL or object=LABEL)")
	case c.PINEnv == "" && c.PINFile == "":
		return errors.New("rootkey: pkcs11: no PIN source (want pin-env=VAR or pin-file=PATH)")
	case c.PINEnv != "" && c.PINFile != "":
		return errors.New("rootkey: pkcs11: both pin-env and pin-file given; choose one")
	case c.Sessions < 0:
		return fmt.Errorf("rootkey: pkcs11: %d sessions", c.Sessions)
	}
	return nil
}

// pin reads the user PIN from its environment variable or file.
func (c PKCS11Config) pin() (string, error) {
	if c.PINEnv != "" {
		p, ok := os.LookupEnv(c.PINEnv)
		if !ok || p == "" {
			return "", fmt.Errorf("rootkey: pkcs11: PIN variable %s is not set", c.PINEnv)
		}
		return p, nil
	}
	st, err := os.Stat(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("rootkey: pkcs11: PIN file %s: %w", c.PINFile, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("rootkey: pkcs11: PIN file %s has mode %04o; group and others must have no access (chmod 600)", c.PINFile, perm)
	}
	b, err := os.ReadFile(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("rootkey: pkcs11: PIN file %s: %w", c.PINFile, err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("rootkey: pkcs11: PIN file %s is empty", c.PINFile)
	}
	return p, nil
}

// modules shares one initialised library per module path. This is process
// state by necessity: C_Initialize may run only once per process per
// library (dlopen returns the same handle), so two holders on one token
// must share it, and the last one to close finalises it.
var modules = struct {
	sync.Mutex
	m map[string]*sharedModule
}{m: map[string]*sharedModule{}}

type sharedModule struct {
	ctx  *pkcs11.Ctx
	refs int
}

func acquireModule(path string) (*pkcs11.Ctx, func(), error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, explain.Errorf(err, "rootkey: pkcs11: module %s not found", path)
		}
		return nil, nil, fmt.Errorf("rootkey: pkcs11: module %s: %w", path, err)
	}
	// Key by the resolved path: two names for one library share one
	// dlopen handle and so one C_Initialize.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	modules.Lock()
	defer modules.Unlock()
	sm := modules.m[path]
	if sm == nil {
		ctx := pkcs11.New(path)
		if ctx == nil {
			return nil, nil, fmt.Errorf("rootkey: pkcs11: module %s could not be loaded (not a PKCS#11 library?)", path)
		}
		if err := ctx.Initialize(); err != nil && !isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, nil, fmt.Errorf("rootkey: pkcs11: module %s: C_Initialize: %w", path, err)
		}
		sm = &sharedModule{ctx: ctx}
		modules.m[path] = sm
	}
	sm.refs++
	var once sync.Once
	release := func() {
		once.Do(func() {
			modules.Lock()
			defer modules.Unlock()
			sm.refs--
			if sm.refs == 0 {
				delete(modules.m, path)
				_ = sm.ctx.Finalize()
				sm.ctx.Destroy()
			}
		})
	}
	return sm.ctx, release, nil
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

// findSlot returns the slot holding the token labelled label.
func findSlot(ctx *pkcs11.Ctx, label string) (uint, pkcs11.TokenInfo, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, fmt.Errorf("rootkey: pkcs11: C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if strings.TrimRight(ti.Label, " \x00") == label {
			return s, ti, nil
		}
	}
	return 0, pkcs11.TokenInfo{}, fmt.Errorf("rootkey: pkcs11: no token labelled %q in %d slot(s)", label, len(slots))
}

// login opens a session on slot and logs the user in. PKCS#11 login state
// is shared by all sessions of the process on that token, so "already logged
// in" (another holder on the same token) is success.
func login(ctx *pkcs11.Ctx, slot uint, cfg PKCS11Config) (pkcs11.SessionHandle, error) {
	pin, err := cfg.pin()
	if err != nil {
		return 0, err
	}
	s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, fmt.Errorf("rootkey: pkcs11: token %q: C_OpenSession: %w", cfg.Token, err)
	}
	if err := ctx.Login(s, pkcs11.CKU_USER, pin); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = ctx.CloseSession(s)
		if isRV(err, pkcs11.CKR_PIN_INCORRECT) {
			return 0, explain.Errorf(ErrWrongPIN, "rootkey: pkcs11: token %q: wrong PIN", cfg.Token)
		}
		return 0, fmt.Errorf("rootkey: pkcs11: token %q: C_Login: %w", cfg.Token, err)
	}
	return s, nil
}

// findKeys returns the AES secret keys labelled label.
func findKeys(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, label string) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if err := ctx.FindObjectsInit(s, tmpl); err != nil {
		return nil, fmt.Errorf("rootkey: pkcs11: C_FindObjectsInit: %w", err)
	}
	objs, _, err := ctx.FindObjects(s, 2)
	if ferr := ctx.FindObjectsFinal(s); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("rootkey: pkcs11: C_FindObjects: %w", err)
	}
	return objs, nil
}

// InitPKCS11 generates the root key inside the token: a 256-bit AES key that
// is sensitive and not extractable, so its value can never be read out of
// the token, usable only for encryption and decryption. It refuses if a key
// with that label already exists (replacing a root key would orphan every
// stored key). The token itself must already be initialised (softhsm2-util
// --init-token, or the HSM vendor's tool).
func InitPKCS11(cfg PKCS11Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	ctx, release, err := acquireModule(cfg.Module)
	if err != nil {
		return err
	}
	defer release()
	slot, _, err := findSlot(ctx, cfg.Token)
	if err != nil {
		return err
	}
	s, err := login(ctx, slot, cfg)
	if err != nil {
		return err
	}
	defer ctx.CloseSession(s)
	existing, err := findKeys(ctx, s, cfg.Label)
	if err != nil {
		return err
	}
	if len(existing) > 0 {
		return explain.Errorf(ErrKeyExists, "rootkey: pkcs11: token %q already has a key labelled %q; refusing to create another", cfg.Token, cfg.Label)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("rootkey: pkcs11: key id: %w", err)
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, cfg.Label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	if _, err := ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl); err != nil {
		return fmt.Errorf("rootkey: pkcs11: token %q: generating AES key %q: %w", cfg.Token, cfg.Label, err)
	}
	return nil
}

// pkcs11Key wraps with CKM_AES_GCM inside the token: the AES key never
// enters this process. Nonces are generated here (not by the token) so the
// blob format is the same for every token and the nonce is in the header
// before the token sees the AAD.
type pkcs11Key struct {
	ctx      *pkcs11.Ctx
	release  func()
	key      pkcs11.ObjectHandle
	id       KeyID
	describe string

	// sessions is the pool: a session is taken for one Encrypt or Decrypt
	// and put back. Close takes mu for writing, so it waits for running
	// operations and later ones see closed.
	sessions chan pkcs11.SessionHandle
	slot     uint
	mu       sync.RWMutex // held for reading by operations, for writing by Close
	closed   bool

	allMu sync.Mutex // guards all, which replaceSession changes under mu.RLock
	all   []pkcs11.SessionHandle
}

func openPKCS11(cfg PKCS11Config) (*pkcs11Key, error) { return openPKCS11Key(cfg, false) }

// openPKCS11Key opens the key; allowExportable exists only so a test can
// read back a key's value and check the token's GCM against Go's.
func openPKCS11Key(cfg PKCS11Config, allowExportable bool) (_ *pkcs11Key, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := cfg.Sessions
	if n == 0 {
		n = DefaultPKCS11Sessions
	}
	ctx, release, err := acquireModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	k := &pkcs11Key{ctx: ctx, release: release, sessions: make(chan pkcs11.SessionHandle, n)}
	defer func() {
		if err != nil {
			k.closeSessions()
			release()
		}
	}()
	slot, ti, err := findSlot(ctx, cfg.Token)
	if err != nil {
		return nil, err
	}
	if _, err := ctx.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, nil)}); err != nil {
		return nil, fmt.Errorf("rootkey: pkcs11: token %q does not offer CKM_AES_GCM: %w", cfg.Token, err)
	}
	first, err := login(ctx, slot, cfg)
	if err != nil {
		return nil, err
	}
	k.all = append(k.all, first)
	objs, err := findKeys(ctx, first, cfg.Label)
	if err != nil {
		return nil, err
	}
	switch len(objs) {
	case 0:
		return nil, fmt.Errorf("rootkey: pkcs11: token %q has no AES key labelled %q (create it with `teeml kms rootkey init`)", cfg.Token, cfg.Label)
	case 1:
	default:
		return nil, fmt.Errorf("rootkey: pkcs11: token %q has several AES keys labelled %q; refusing to guess", cfg.Token, cfg.Label)
	}
	k.key = objs[0]
	k.slot = slot
	attrs, err := ctx.GetAttributeValue(first, k.key, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("rootkey: pkcs11: key %q: C_GetAttributeValue: %w", cfg.Label, err)
	}
	var keyIDAttr []byte
	for _, a := range attrs {
		switch a.Type {
		case pkcs11.CKA_SENSITIVE:
			if !attrBool(a.Value) && !allowExportable {
				return nil, fmt.Errorf("rootkey: pkcs11: key %q on token %q is not CKA_SENSITIVE; its value could be read out, refusing it as a root key", cfg.Label, cfg.Token)
			}
		case pkcs11.CKA_EXTRACTABLE:
			if attrBool(a.Value) && !allowExportable {
				return nil, fmt.Errorf("rootkey: pkcs11: key %q on token %q is CKA_EXTRACTABLE; it could be exported, refusing it as a root key", cfg.Label, cfg.Token)
			}
		case pkcs11.CKA_VALUE_LEN:
			if n := attrUint(a.Value); n != 32 {
				return nil, fmt.Errorf("rootkey: pkcs11: key %q on token %q is %d bytes, want a 32-byte AES-256 key", cfg.Label, cfg.Token, n)
			}
		case pkcs11.CKA_ID:
			keyIDAttr = a.Value
		}
	}
	k.id = pkcs11KeyID(cfg.Label, keyIDAttr)
	for i := 1; i < n; i++ {
		s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return nil, fmt.Errorf("rootkey: pkcs11: token %q: C_OpenSession %d of %d: %w", cfg.Token, i+1, n, err)
		}
		k.all = append(k.all, s)
	}
	for _, s := range k.all {
		k.sessions <- s
	}
	k.describe = fmt.Sprintf("pkcs11 token %q (serial %s, %s) key %q via %s, %d sessions",
		cfg.Token, strings.TrimSpace(ti.SerialNumber), strings.TrimSpace(ti.Model), cfg.Label, cfg.Module, n)
	return k, nil
}

// pkcs11KeyID fingerprints the token object by its label and CKA_ID (random
// per key when made by InitPKCS11). The key value itself is unreadable.
func pkcs11KeyID(label string, ckaID []byte) KeyID {
	h := sha256.New()
	h.Write([]byte("teeml kms rootkey pkcs11 key-id v1\x00"))
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(ckaID)
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

func attrBool(v []byte) bool { return len(v) > 0 && v[0] != 0 }

func attrUint(v []byte) uint64 {
	var n uint64
	// CK_ULONG in host byte order; every platform Go+cgo supports here is
	// little-endian.
	for i := len(v) - 1; i >= 0; i-- {
		n = n<<8 | uint64(v[i])
	}
	return n
}

// withSession runs op on a pooled session, waiting for one if all are busy.
func (k *pkcs11Key) withSession(op func(pkcs11.SessionHandle) error) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return ErrClosed
	}
	s := <-k.sessions
	err := op(s)
	if err != nil && !errors.Is(err, ErrAuthentication) {
		// The session may be unusable (closed by the token, or left with
		// an operation active after a failure): put a fresh one back.
		s = k.replaceSession(s)
	}
	k.sessions <- s
	return err
}

// replaceSession closes s and returns a newly opened session, or s itself
// if no new session can be opened (the next operation then reports the
// token's error). Login state carries over: it belongs to the process, and
// the other pooled sessions keep it alive while s is replaced.
func (k *pkcs11Key) replaceSession(s pkcs11.SessionHandle) pkcs11.SessionHandle {
	ns, err := k.ctx.OpenSession(k.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return s
	}
	_ = k.ctx.CloseSession(s)
	k.allMu.Lock()
	defer k.allMu.Unlock()
	for i := range k.all {
		if k.all[i] == s {
			k.all[i] = ns
		}
	}
	return ns
}

func (k *pkcs11Key) Wrap(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("rootkey: nonce: %w", err)
	}
	h := newHeader(KindPKCS11, k.id, nonce)
	var ct []byte
	err := k.withSession(func(s pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(nonce, gcmAAD(h, aad), tagSize*8)
		defer params.Free()
		if err := k.ctx.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, k.key); err != nil {
			return fmt.Errorf("rootkey: pkcs11: C_EncryptInit: %w", err)
		}
		out, err := k.ctx.Encrypt(s, plaintext)
		if err != nil {
			return fmt.Errorf("rootkey: pkcs11: C_Encrypt: %w", err)
		}
		// Some tokens substitute their own IV; the header already names
		// ours, so such a token cannot be used.
		if iv := params.IV(); iv != nil && string(iv) != string(nonce) {
			return errors.New("rootkey: pkcs11: token replaced the GCM IV; this token is not supported")
		}
		ct = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ct) != len(plaintext)+tagSize {
		return nil, fmt.Errorf("rootkey: pkcs11: token returned %d bytes for %d-byte plaintext, want plaintext+%d-byte tag", len(ct), len(plaintext), tagSize)
	}
	out := make([]byte, 0, len(h)+len(ct))
	return append(append(out, h...), ct...), nil
}

func (k *pkcs11Key) Unwrap(ciphertext, aad []byte) ([]byte, error) {
	b, err := checkFor(ciphertext, KindPKCS11, k.id)
	if err != nil {
		return nil, err
	}
	var pt []byte
	err = k.withSession(func(s pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(b.Nonce, gcmAAD(b.header, aad), tagSize*8)
		defer params.Free()
		if err := k.ctx.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, k.key); err != nil {
			return fmt.Errorf("rootkey: pkcs11: C_DecryptInit: %w", err)
		}
		out, err := k.ctx.Decrypt(s, b.Ciphertext)
		if err != nil {
			// PKCS#11 says a bad tag is CKR_ENCRYPTED_DATA_INVALID;
			// SoftHSM2 2.6 reports it as CKR_GENERAL_ERROR. Either way
			// the token's code is kept in the message.
			if isRV(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID) || isRV(err, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE) || isRV(err, pkcs11.CKR_GENERAL_ERROR) {
				return fmt.Errorf("%w [token: %w]", ErrAuthentication, err)
			}
			return fmt.Errorf("rootkey: pkcs11: C_Decrypt: %w", err)
		}
		pt = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pt, nil
}

func (k *pkcs11Key) Describe() string { return k.describe }
func (k *pkcs11Key) Simulated() bool  { return false }

// Close waits for running operations, closes the sessions and releases the
// module. It is safe to call more than once.
func (k *pkcs11Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	err := k.closeSessions()
	k.release()
	return err
}

func (k *pkcs11Key) closeSessions() error {
	k.allMu.Lock()
	defer k.allMu.Unlock()
	var errs []error
	for _, s := range k.all {
		if err := k.ctx.CloseSession(s); err != nil {
			errs = append(errs, fmt.Errorf("rootkey: pkcs11: C_CloseSession: %w", err))
		}
	}
	k.all = nil
	return errors.Join(errs...)
}
