package enclave

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Defaults for ManifestConfig.
const (
	// DefaultLibOSPath is where Debian/Ubuntu Gramine packages install
	// libsysdb.so ({{ gramine.libos }} in Gramine's manifest templates).
	DefaultLibOSPath         = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"
	DefaultEnclaveSize       = "2G"
	DefaultMaxThreads        = 4
	DefaultLogLevel          = "error"
	DefaultRemoteAttestation = "dcap"
)

// Mount is one fs.mounts entry.
type Mount struct {
	// Path is the absolute path inside the enclave.
	Path string
	// URI is the host side, "file:/host/path"; ignored for tmpfs.
	URI string
	// Type is "chroot" (also when empty), "encrypted", "tmpfs" or
	// "untrusted_shm".
	Type string
	// KeyName is the key of an "encrypted" mount (optional).
	KeyName string
}

// ManifestConfig describes a Gramine SGX manifest. Paths in TrustedFiles,
// TrustConfig, AllowedFiles and ArgvSrcFile are host paths; relative paths
// are resolved against the current directory here and against Gramine's
// working directory when it runs, so absolute paths are safest.
type ManifestConfig struct {
	// Entrypoint is libos.entrypoint: the application's first executable,
	// a path inside the enclave's file system. Required.
	Entrypoint string
	// LibOSPath is the host path of Gramine's libsysdb.so;
	// loader.entrypoint.uri is "file:" + LibOSPath. Default DefaultLibOSPath.
	LibOSPath string
	// LogLevel is loader.log_level: none, error, warning, debug, trace or
	// all. Default "error", the only level Gramine calls safe in production.
	LogLevel string
	// Env sets loader.env.NAME = "VALUE"; host variables are never passed
	// through.
	Env map[string]string
	// Argv, if set, becomes loader.argv (argv[0] included).
	Argv []string
	// ArgvSrcFile, if set, becomes loader.argv_src_file and is added to the
	// trusted files; the file holds NUL-terminated arguments (see
	// SerializeArgv). Argv and ArgvSrcFile are mutually exclusive.
	// loader.insecure__use_cmdline_argv is never written.
	ArgvSrcFile string
	// Mounts become fs.mounts, in the order given (Gramine mounts them in
	// order).
	Mounts []Mount
	// EnclaveSize is sgx.enclave_size, a power of two with an optional
	// K/M/G suffix. Default "2G".
	EnclaveSize string
	// MaxThreads is sgx.max_threads. Default 4.
	MaxThreads int
	ISVProdID  uint16
	ISVSVN     uint16
	// Debug is sgx.debug. A debug enclave has no confidentiality.
	Debug bool
	// EDMM is sgx.edmm_enable.
	EDMM bool
	// RemoteAttestation is sgx.remote_attestation: "dcap" (the default) or
	// "none".
	RemoteAttestation string
	// TrustedFiles are files or directories to put into sgx.trusted_files
	// with their SHA-256. Directories are walked recursively; as in
	// gramine-sgx-sign, symbolic links to directories and entries that are
	// neither regular files nor directories inside them are skipped, and
	// symbolic links to files are hashed by content.
	TrustedFiles []string
	// TrustConfig are files (or directories) that decide trust: policies,
	// training plans. They always become trusted files, and no AllowedFiles
	// entry may equal, contain or lie inside one of them.
	TrustConfig []string
	// Root, if set, is a directory holding the enclave's future root file
	// system (an image being built): TrustedFiles, TrustConfig and
	// ArgvSrcFile are then absolute paths inside it, hashed from Root and
	// written as those paths, so the manifest names no host path.
	Root string
	// AllowedFiles become sgx.allowed_files: host files or directories the
	// enclave may read and write without integrity protection. Entries that
	// start with "dev:" are passed through as device URIs.
	AllowedFiles []string
}

// trustedFile is one sgx.trusted_files entry.
type trustedFile struct {
	URI    string // "file:" + host path
	SHA256 string // lower-case hex
}

// WriteManifest writes the Gramine manifest described by cfg to w as TOML.
// The output is deterministic: keys in a fixed order, environment variables,
// trusted files and allowed files sorted (mounts keep their order). Trusted
// files are hashed as they are now, so the manifest is meant to be signed
// right after it is written.
func WriteManifest(w io.Writer, cfg ManifestConfig) error {
	m, err := buildManifest(cfg)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	m.write(bw)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("manifest: writing: %w", err)
	}
	return nil
}

// manifest is a validated ManifestConfig with defaults applied and trusted
// files hashed.
type manifest struct {
	cfg          ManifestConfig
	envKeys      []string
	trusted      []trustedFile
	allowedFiles []string
}

func buildManifest(cfg ManifestConfig) (*manifest, error) {
	if err := setManifestDefaults(&cfg); err != nil {
		return nil, err
	}
	if err := checkUTF8(cfg); err != nil {
		return nil, err
	}
	m := &manifest{cfg: cfg}
	var err error
	if m.envKeys, err = envKeys(cfg.Env); err != nil {
		return nil, err
	}
	for i, mt := range cfg.Mounts {
		if err := checkMount(mt); err != nil {
			return nil, fmt.Errorf("manifest: mount %d (%s): %w", i, mt.Path, err)
		}
	}
	if m.trusted, err = trustedFiles(cfg); err != nil {
		return nil, err
	}
	if m.allowedFiles, err = allowedFiles(cfg, m.trusted); err != nil {
		return nil, err
	}
	return m, nil
}

// setManifestDefaults fills in cfg's defaults and checks its scalar
// settings and argv.
func setManifestDefaults(cfg *ManifestConfig) error {
	if cfg.Entrypoint == "" {
		return errors.New("manifest: entrypoint (libos.entrypoint) is required")
	}
	if cfg.LibOSPath == "" {
		cfg.LibOSPath = DefaultLibOSPath
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = DefaultLogLevel
	}
	switch cfg.LogLevel {
	case "none", "error", "warning", "debug", "trace", "all":
	default:
		return fmt.Errorf("manifest: log level %q is not one of none, error, warning, debug, trace, all", cfg.LogLevel)
	}
	if cfg.EnclaveSize == "" {
		cfg.EnclaveSize = DefaultEnclaveSize
	}
	if err := checkEnclaveSize(cfg.EnclaveSize); err != nil {
		return err
	}
	if cfg.MaxThreads == 0 {
		cfg.MaxThreads = DefaultMaxThreads
	}
	if cfg.MaxThreads < 1 {
		return fmt.Errorf("manifest: max threads is %d, must be at least 1", cfg.MaxThreads)
	}
	if cfg.RemoteAttestation == "" {
		cfg.RemoteAttestation = DefaultRemoteAttestation
	}
	if cfg.RemoteAttestation != "dcap" && cfg.RemoteAttestation != "none" {
		return fmt.Errorf("manifest: remote attestation %q is not \"dcap\" or \"none\"", cfg.RemoteAttestation)
	}
	if len(cfg.Argv) > 0 && cfg.ArgvSrcFile != "" {
		return errors.New("manifest: argv and argv source file are mutually exclusive")
	}
	for _, a := range cfg.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("manifest: argument %q contains a NUL byte", a)
		}
	}
	return nil
}

// envKeys checks env's names and values and returns its names sorted.
func envKeys(env map[string]string) ([]string, error) {
	var keys []string
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("manifest: environment variable name %q is empty or contains '=' or NUL", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("manifest: environment variable %s contains a NUL byte", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// trustedFiles hashes the trusted files, sorted by URI without duplicates:
// the user's list, the trust-deciding config and the argv file.
func trustedFiles(cfg ManifestConfig) ([]trustedFile, error) {
	trustedPaths := slices.Clone(cfg.TrustedFiles)
	trustedPaths = append(trustedPaths, cfg.TrustConfig...)
	if cfg.ArgvSrcFile != "" {
		trustedPaths = append(trustedPaths, cfg.ArgvSrcFile)
	}
	var trusted []trustedFile
	seen := map[string]bool{}
	for _, p := range trustedPaths {
		files, err := expandTrusted(cfg.Root, p)
		if err != nil {
			return nil, err
		}
		for _, tf := range files {
			if !seen[tf.URI] {
				seen[tf.URI] = true
				trusted = append(trusted, tf)
			}
		}
	}
	sort.Slice(trusted, func(i, j int) bool { return trusted[i].URI < trusted[j].URI })
	return trusted, nil
}

// allowedFiles returns the allowed files' URIs, sorted without duplicates.
// An allowed file is never a trust-deciding config or a trusted file.
func allowedFiles(cfg ManifestConfig, trusted []trustedFile) ([]string, error) {
	canon := canonical
	if cfg.Root != "" {
		// Paths inside an image root: compared lexically, never resolved
		// against the host's symbolic links.
		canon = func(p string) ([]string, error) { return []string{filepath.Clean(p)}, nil }
	}
	trustConfig, err := canonicalAll(canon, cfg.TrustConfig)
	if err != nil {
		return nil, err
	}
	trustedPaths := make([]string, 0, len(trusted))
	for _, tf := range trusted {
		trustedPaths = append(trustedPaths, strings.TrimPrefix(tf.URI, "file:"))
	}
	trustedCanon, err := canonicalAll(canon, trustedPaths)
	if err != nil {
		return nil, err
	}
	var allowed []string
	allowedSeen := map[string]bool{}
	for _, a := range cfg.AllowedFiles {
		uri := a
		if !strings.HasPrefix(a, "dev:") {
			if uri, err = allowedFileURI(canon, a, trustConfig, trustedCanon); err != nil {
				return nil, err
			}
		}
		if !allowedSeen[uri] {
			allowedSeen[uri] = true
			allowed = append(allowed, uri)
		}
	}
	sort.Strings(allowed)
	return allowed, nil
}

// allowedFileURI returns the file: URI of allowed file a once it overlaps
// no trust-deciding config and is no trusted file.
func allowedFileURI(canonical func(string) ([]string, error), a string, trustConfig, trustedCanon []canonPath) (string, error) {
	if a == "" {
		return "", errors.New("manifest: allowed file: empty path")
	}
	forms, err := canonical(a)
	if err != nil {
		return "", fmt.Errorf("manifest: allowed file %s: %w", a, err)
	}
	for _, tc := range trustConfig {
		for _, f := range forms {
			for _, t := range tc.forms {
				if isWithin(t, f) || isWithin(f, t) {
					return "", fmt.Errorf("manifest: allowed file %s: overlaps trust-deciding config %s, which must stay a trusted file", a, tc.path)
				}
			}
		}
	}
	for _, tf := range trustedCanon {
		for _, f := range forms {
			if slices.Contains(tf.forms, f) {
				return "", fmt.Errorf("manifest: allowed file %s: is also a trusted file", a)
			}
		}
	}
	return "file:" + filepath.Clean(a), nil
}

// checkUTF8 rejects strings TOML cannot hold (TOML documents are UTF-8).
func checkUTF8(cfg ManifestConfig) error {
	var bad string
	check := func(s string) {
		if bad == "" && !utf8.ValidString(s) {
			bad = s
		}
	}
	check(cfg.Entrypoint)
	check(cfg.LibOSPath)
	check(cfg.ArgvSrcFile)
	for _, a := range cfg.Argv {
		check(a)
	}
	for k, v := range cfg.Env {
		check(k)
		check(v)
	}
	for _, mt := range cfg.Mounts {
		check(mt.Path)
		check(mt.URI)
		check(mt.KeyName)
	}
	for _, list := range [][]string{cfg.TrustedFiles, cfg.TrustConfig, cfg.AllowedFiles} {
		for _, p := range list {
			check(p)
		}
	}
	if bad != "" {
		return fmt.Errorf("manifest: %q is not valid UTF-8, which a TOML manifest cannot hold", bad)
	}
	return nil
}

func checkEnclaveSize(s string) error {
	num, scale := s, uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		num, scale = s[:len(s)-1], 1<<10
	case strings.HasSuffix(s, "M"):
		num, scale = s[:len(s)-1], 1<<20
	case strings.HasSuffix(s, "G"):
		num, scale = s[:len(s)-1], 1<<30
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 || n > (1<<62)/scale {
		return fmt.Errorf("manifest: enclave size %q is not a positive number with an optional K, M or G suffix", s)
	}
	if size := n * scale; size&(size-1) != 0 {
		return fmt.Errorf("manifest: enclave size %q is not a power of two, as SGX requires", s)
	}
	return nil
}

func checkMount(mt Mount) error {
	if !strings.HasPrefix(mt.Path, "/") {
		return errors.New("path must be absolute")
	}
	switch mt.Type {
	case "", "chroot", "encrypted", "untrusted_shm":
		if !strings.HasPrefix(mt.URI, "file:") {
			return fmt.Errorf("uri %q must start with \"file:\"", mt.URI)
		}
	case "tmpfs":
	default:
		return fmt.Errorf("type %q is not chroot, encrypted, tmpfs or untrusted_shm", mt.Type)
	}
	if mt.KeyName != "" && mt.Type != "encrypted" {
		return errors.New("key name is only valid for encrypted mounts")
	}
	return nil
}

// expandTrusted returns the trusted-file entries for a file or directory.
func expandTrusted(root, p string) ([]trustedFile, error) {
	if p == "" {
		return nil, errors.New("manifest: trusted file: empty path")
	}
	p = filepath.Clean(p)
	uri := func(path string) string { return "file:" + path }
	if root != "" {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("manifest: trusted file %s: not an absolute path inside the root file system", p)
		}
		root = filepath.Clean(root)
		p = filepath.Join(root, p)
		uri = func(path string) string { return "file:" + strings.TrimPrefix(path, root) }
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("manifest: trusted file %s: %w", p, unwrapPath(err))
	}
	if fi.Mode().IsRegular() {
		sum, err := hashFile(p)
		if err != nil {
			return nil, err
		}
		return []trustedFile{{URI: uri(p), SHA256: sum}}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("manifest: trusted file %s: not a regular file or directory", p)
	}
	var out []trustedFile
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("manifest: trusted directory %s: %w", path, unwrapPath(err))
		}
		if d.IsDir() {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("manifest: trusted file %s: %w", path, unwrapPath(err))
			}
			if !target.Mode().IsRegular() {
				return nil // symlinked directory or special file: skipped, as gramine-sgx-sign does
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		if !utf8.ValidString(path) {
			return fmt.Errorf("manifest: trusted file %q: name is not valid UTF-8, which a TOML manifest cannot hold", path)
		}
		sum, err := hashFile(path)
		if err != nil {
			return err
		}
		out = append(out, trustedFile{URI: uri(path), SHA256: sum})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("manifest: trusted file %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("manifest: trusted file %s: reading: %w", path, unwrapPath(err))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type canonPath struct {
	path  string   // as given
	forms []string // absolute lexical form and, if different, symlink-resolved form
}

func canonicalAll(canonical func(string) ([]string, error), paths []string) ([]canonPath, error) {
	out := make([]canonPath, 0, len(paths))
	for _, p := range paths {
		forms, err := canonical(p)
		if err != nil {
			return nil, fmt.Errorf("manifest: %s: %w", p, err)
		}
		out = append(out, canonPath{path: p, forms: forms})
	}
	return out, nil
}

// canonical returns the absolute lexical form of p and, when it differs,
// the form with symbolic links resolved (for a path that does not exist yet,
// its longest existing ancestor is resolved).
func canonical(p string) ([]string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, err
	}
	forms := []string{abs}
	rest := ""
	dir := abs
	for {
		resolved, err := filepath.EvalSymlinks(dir)
		if err == nil {
			r := filepath.Join(resolved, rest)
			if r != abs {
				forms = append(forms, r)
			}
			return forms, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return forms, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

// isWithin reports whether path equals dir or lies below it.
func isWithin(path, dir string) bool {
	if path == dir {
		return true
	}
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return strings.HasPrefix(path, dir+"/")
}

func (m *manifest) write(w *bufio.Writer) {
	cfg := m.cfg
	kv := func(key, val string) { fmt.Fprintf(w, "%s = %s\n", key, val) }
	w.WriteString("# Gramine manifest generated by teeml; sign it with gramine-sgx-sign.\n\n")
	kv("libos.entrypoint", tomlString(cfg.Entrypoint))
	kv("loader.entrypoint.uri", tomlString("file:"+cfg.LibOSPath))
	kv("loader.log_level", tomlString(cfg.LogLevel))
	if len(cfg.Argv) > 0 {
		args := make([]string, len(cfg.Argv))
		for i, a := range cfg.Argv {
			args[i] = tomlString(a)
		}
		kv("loader.argv", "["+strings.Join(args, ", ")+"]")
	}
	if cfg.ArgvSrcFile != "" {
		kv("loader.argv_src_file", tomlString("file:"+filepath.Clean(cfg.ArgvSrcFile)))
	}
	for _, k := range m.envKeys {
		kv("loader.env."+tomlKey(k), tomlString(cfg.Env[k]))
	}
	w.WriteString("\n")
	// fs.mounts is written even when empty: Gramine's manifest schema
	// requires it.
	{
		w.WriteString("fs.mounts = [\n")
		for _, mt := range cfg.Mounts {
			typ := mt.Type
			if typ == "" {
				typ = "chroot"
			}
			fmt.Fprintf(w, "  { path = %s", tomlString(mt.Path))
			if mt.URI != "" {
				fmt.Fprintf(w, ", uri = %s", tomlString(mt.URI))
			}
			fmt.Fprintf(w, ", type = %s", tomlString(typ))
			if mt.KeyName != "" {
				fmt.Fprintf(w, ", key_name = %s", tomlString(mt.KeyName))
			}
			w.WriteString(" },\n")
		}
		w.WriteString("]\n\n")
	}
	kv("sgx.debug", strconv.FormatBool(cfg.Debug))
	kv("sgx.edmm_enable", strconv.FormatBool(cfg.EDMM))
	kv("sgx.enclave_size", tomlString(cfg.EnclaveSize))
	kv("sgx.max_threads", strconv.Itoa(cfg.MaxThreads))
	kv("sgx.remote_attestation", tomlString(cfg.RemoteAttestation))
	kv("sgx.isvprodid", strconv.Itoa(int(cfg.ISVProdID)))
	kv("sgx.isvsvn", strconv.Itoa(int(cfg.ISVSVN)))
	// Gramine's default, written out so the manifest states it: files that
	// are neither trusted nor allowed cannot be opened.
	kv("sgx.file_check_policy", tomlString("strict"))
	w.WriteString("\nsgx.trusted_files = [\n")
	for _, tf := range m.trusted {
		fmt.Fprintf(w, "  { uri = %s, sha256 = %s },\n", tomlString(tf.URI), tomlString(tf.SHA256))
	}
	w.WriteString("]\n")
	if len(m.allowedFiles) > 0 {
		w.WriteString("\nsgx.allowed_files = [\n")
		for _, a := range m.allowedFiles {
			fmt.Fprintf(w, "  %s,\n", tomlString(a))
		}
		w.WriteString("]\n")
	}
}

// tomlString returns s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tomlKey returns k as a TOML key: bare if it can be, quoted otherwise.
func tomlKey(k string) string {
	for _, r := range k {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return tomlString(k)
		}
	}
	return k
}

// SerializeArgv returns args in the format of loader.argv_src_file (what
// gramine-argv-serializer writes): each argument followed by a NUL byte.
// args[0] is the program name.
func SerializeArgv(args []string) ([]byte, error) {
	var b []byte
	for _, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("argv: argument %q contains a NUL byte", a)
		}
		b = append(b, a...)
		b = append(b, 0)
	}
	return b, nil
}
