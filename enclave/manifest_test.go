package enclave

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type parsedManifest struct {
	LibOS struct {
		Entrypoint string `toml:"entrypoint"`
	} `toml:"libos"`
	Loader struct {
		Entrypoint struct {
			URI string `toml:"uri"`
		} `toml:"entrypoint"`
		LogLevel    string            `toml:"log_level"`
		Env         map[string]string `toml:"env"`
		Argv        []string          `toml:"argv"`
		ArgvSrcFile string            `toml:"argv_src_file"`
	} `toml:"loader"`
	FS struct {
		Mounts []map[string]string `toml:"mounts"`
	} `toml:"fs"`
	SGX struct {
		Debug             bool                `toml:"debug"`
		EDMMEnable        bool                `toml:"edmm_enable"`
		EnclaveSize       string              `toml:"enclave_size"`
		MaxThreads        int                 `toml:"max_threads"`
		RemoteAttestation string              `toml:"remote_attestation"`
		ISVProdID         int                 `toml:"isvprodid"`
		ISVSVN            int                 `toml:"isvsvn"`
		TrustedFiles      []map[string]string `toml:"trusted_files"`
		AllowedFiles      []string            `toml:"allowed_files"`
		FileCheckPolicy   string              `toml:"file_check_policy"`
	} `toml:"sgx"`
}

func renderManifest(t *testing.T, cfg ManifestConfig) (string, parsedManifest, map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteManifest(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	var pm parsedManifest
	dec := toml.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pm); err != nil {
		t.Fatalf("manifest is not valid TOML or has unexpected keys: %v\n%s", err, buf.String())
	}
	var raw map[string]any
	if err := toml.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	return buf.String(), pm, raw
}

func TestWriteManifest(t *testing.T) {
	dir := t.TempDir()
	app := writeFile(t, filepath.Join(dir, "app", "train.py"), "print('train')\n")
	writeFile(t, filepath.Join(dir, "lib", "b.so"), "bbb")
	writeFile(t, filepath.Join(dir, "lib", "sub", "a.so"), "aaa")
	writeFile(t, filepath.Join(dir, "lib", "sub", "deeper", "c.so"), "ccc")
	if err := os.Symlink(filepath.Join(dir, "lib", "b.so"), filepath.Join(dir, "lib", "link.so")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "lib", "sub"), filepath.Join(dir, "lib", "linkdir")); err != nil {
		t.Fatal(err)
	}
	policy := writeFile(t, filepath.Join(dir, "conf", "policy.yaml"), "allow: []\n")
	argvFile := writeFile(t, filepath.Join(dir, "conf", "argv"), "python3\x00train.py\x00")
	cfg := ManifestConfig{
		Entrypoint:  "/usr/bin/python3",
		LibOSPath:   "/opt/gramine/libsysdb.so",
		Env:         map[string]string{"Z_LAST": "z", "A_FIRST": "a \"quoted\"\n", "with.dot": "d", "LD_LIBRARY_PATH": "/lib"},
		ArgvSrcFile: argvFile,
		Mounts: []Mount{
			{Path: "/lib", URI: "file:/opt/gramine/runtime/glibc"},
			{Path: "/app", URI: "file:" + filepath.Join(dir, "app"), Type: "chroot"},
			{Path: "/tmp", Type: "tmpfs"},
			{Path: "/data", URI: "file:" + filepath.Join(dir, "data"), Type: "encrypted", KeyName: "_sgx_mrenclave"},
		},
		ISVProdID:    3,
		ISVSVN:       9,
		TrustedFiles: []string{filepath.Join(dir, "lib"), app, app},
		TrustConfig:  []string{policy},
		AllowedFiles: []string{filepath.Join(dir, "out"), "dev:/dev/null"},
	}
	text, pm, raw := renderManifest(t, cfg)

	if pm.LibOS.Entrypoint != "/usr/bin/python3" {
		t.Errorf("libos.entrypoint %q", pm.LibOS.Entrypoint)
	}
	if pm.Loader.Entrypoint.URI != "file:/opt/gramine/libsysdb.so" {
		t.Errorf("loader.entrypoint.uri %q", pm.Loader.Entrypoint.URI)
	}
	if pm.Loader.LogLevel != "error" {
		t.Errorf("loader.log_level %q", pm.Loader.LogLevel)
	}
	if want := map[string]string{"Z_LAST": "z", "A_FIRST": "a \"quoted\"\n", "with.dot": "d", "LD_LIBRARY_PATH": "/lib"}; !mapsEqual(pm.Loader.Env, want) {
		t.Errorf("loader.env %q", pm.Loader.Env)
	}
	if pm.Loader.ArgvSrcFile != "file:"+argvFile || pm.Loader.Argv != nil {
		t.Errorf("argv: src %q, argv %q", pm.Loader.ArgvSrcFile, pm.Loader.Argv)
	}
	loader := raw["loader"].(map[string]any)
	for _, k := range []string{"insecure__use_cmdline_argv", "insecure__use_host_env"} {
		if _, ok := loader[k]; ok {
			t.Errorf("loader.%s is set", k)
		}
	}
	wantMounts := []map[string]string{
		{"path": "/lib", "uri": "file:/opt/gramine/runtime/glibc", "type": "chroot"},
		{"path": "/app", "uri": "file:" + filepath.Join(dir, "app"), "type": "chroot"},
		{"path": "/tmp", "type": "tmpfs"},
		{"path": "/data", "uri": "file:" + filepath.Join(dir, "data"), "type": "encrypted", "key_name": "_sgx_mrenclave"},
	}
	if len(pm.FS.Mounts) != len(wantMounts) {
		t.Fatalf("fs.mounts %v", pm.FS.Mounts)
	}
	for i := range wantMounts {
		if !mapsEqual(pm.FS.Mounts[i], wantMounts[i]) {
			t.Errorf("fs.mounts[%d] = %v, want %v", i, pm.FS.Mounts[i], wantMounts[i])
		}
	}
	s := pm.SGX
	if s.Debug || s.EDMMEnable || s.FileCheckPolicy != "strict" || s.EnclaveSize != "2G" || s.MaxThreads != 4 || s.RemoteAttestation != "dcap" || s.ISVProdID != 3 || s.ISVSVN != 9 {
		t.Errorf("sgx settings %+v", s)
	}
	sgx := raw["sgx"].(map[string]any)
	if d, ok := sgx["debug"].(bool); !ok || d {
		t.Errorf("sgx.debug is %v, want explicit false", sgx["debug"])
	}

	// Trusted files: the directory walked (symlinked file hashed by content,
	// symlinked directory skipped), the app once, the policy and argv file.
	want := []map[string]string{
		{"uri": "file:" + app, "sha256": sha("print('train')\n")},
		{"uri": "file:" + argvFile, "sha256": sha("python3\x00train.py\x00")},
		{"uri": "file:" + policy, "sha256": sha("allow: []\n")},
		{"uri": "file:" + filepath.Join(dir, "lib", "b.so"), "sha256": sha("bbb")},
		{"uri": "file:" + filepath.Join(dir, "lib", "link.so"), "sha256": sha("bbb")},
		{"uri": "file:" + filepath.Join(dir, "lib", "sub", "a.so"), "sha256": sha("aaa")},
		{"uri": "file:" + filepath.Join(dir, "lib", "sub", "deeper", "c.so"), "sha256": sha("ccc")},
	}
	slices.SortFunc(want, func(a, b map[string]string) int { return strings.Compare(a["uri"], b["uri"]) })
	if len(s.TrustedFiles) != len(want) {
		t.Fatalf("trusted files:\n%v\nwant\n%v", s.TrustedFiles, want)
	}
	for i := range want {
		if !mapsEqual(s.TrustedFiles[i], want[i]) {
			t.Errorf("trusted_files[%d] = %v, want %v", i, s.TrustedFiles[i], want[i])
		}
	}
	if !slices.Equal(s.AllowedFiles, []string{"dev:/dev/null", "file:" + filepath.Join(dir, "out")}) {
		t.Errorf("allowed_files %q", s.AllowedFiles)
	}

	// Deterministic: the same config renders the same bytes.
	for range 5 {
		again, _, _ := renderManifest(t, cfg)
		if again != text {
			t.Fatal("two renderings differ")
		}
	}
	if strings.Index(text, "A_FIRST") > strings.Index(text, "Z_LAST") {
		t.Error("environment not sorted")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestWriteManifestOptions(t *testing.T) {
	_, pm, _ := renderManifest(t, ManifestConfig{
		Entrypoint:        "/bin/app",
		Argv:              []string{"app", "--flag", "x y"},
		Debug:             true,
		EDMM:              true,
		EnclaveSize:       "512M",
		MaxThreads:        16,
		RemoteAttestation: "none",
		LogLevel:          "warning",
	})
	if !slices.Equal(pm.Loader.Argv, []string{"app", "--flag", "x y"}) {
		t.Errorf("loader.argv %q", pm.Loader.Argv)
	}
	if pm.Loader.Entrypoint.URI != "file:"+DefaultLibOSPath {
		t.Errorf("default libos: %q", pm.Loader.Entrypoint.URI)
	}
	s := pm.SGX
	if !s.Debug || !s.EDMMEnable || s.EnclaveSize != "512M" || s.MaxThreads != 16 || s.RemoteAttestation != "none" || pm.Loader.LogLevel != "warning" {
		t.Errorf("options not applied: %+v", pm)
	}
	if len(s.TrustedFiles) != 0 || len(s.AllowedFiles) != 0 {
		t.Errorf("unexpected files %v %v", s.TrustedFiles, s.AllowedFiles)
	}
}

func TestWriteManifestTrustConfigNotAllowed(t *testing.T) {
	dir := t.TempDir()
	policy := writeFile(t, filepath.Join(dir, "conf", "policy.yaml"), "p")
	plan := writeFile(t, filepath.Join(dir, "plans", "plan.toml"), "q")
	if err := os.Symlink(filepath.Join(dir, "conf"), filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	trusted := writeFile(t, filepath.Join(dir, "bin", "app"), "app")
	for _, tc := range []struct {
		name    string
		allowed string
		want    string
	}{
		{"same file", policy, "overlaps trust-deciding config"},
		{"parent directory", filepath.Join(dir, "conf"), "overlaps trust-deciding config"},
		{"root", "/", "overlaps trust-deciding config"},
		{"unclean path", filepath.Join(dir, "conf", ".", "..", "conf", "policy.yaml"), "overlaps trust-deciding config"},
		{"symlink alias", filepath.Join(dir, "alias", "policy.yaml"), "overlaps trust-deciding config"},
		{"symlinked parent", filepath.Join(dir, "alias"), "overlaps trust-deciding config"},
		{"inside a config directory", filepath.Join(dir, "plans", "new.toml"), "overlaps trust-deciding config"},
		{"a trusted file", trusted, "is also a trusted file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteManifest(&buf, ManifestConfig{
				Entrypoint:   "/bin/app",
				TrustedFiles: []string{trusted},
				TrustConfig:  []string{policy, filepath.Join(dir, "plans")},
				AllowedFiles: []string{tc.allowed},
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "manifest: allowed file ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error not one line naming the file: %q", err)
			}
			if buf.Len() != 0 {
				t.Fatal("a refused manifest was partly written")
			}
		})
	}
	_ = plan
	// A sibling path that shares a prefix is fine.
	var buf bytes.Buffer
	if err := WriteManifest(&buf, ManifestConfig{
		Entrypoint:   "/bin/app",
		TrustConfig:  []string{policy},
		AllowedFiles: []string{filepath.Join(dir, "conf-out"), policy + ".bak"},
	}); err != nil {
		t.Fatal(err)
	}
}

func TestWriteManifestErrors(t *testing.T) {
	dir := t.TempDir()
	unreadable := writeFile(t, filepath.Join(dir, "secret"), "s")
	for _, tc := range []struct {
		name string
		cfg  ManifestConfig
		want string
	}{
		{"no entrypoint", ManifestConfig{}, "manifest: entrypoint (libos.entrypoint) is required"},
		{"bad log level", ManifestConfig{Entrypoint: "/a", LogLevel: "verbose"}, `manifest: log level "verbose"`},
		{"size not power of two", ManifestConfig{Entrypoint: "/a", EnclaveSize: "3G"}, "not a power of two"},
		{"size garbage", ManifestConfig{Entrypoint: "/a", EnclaveSize: "2GB"}, "not a positive number"},
		{"size zero", ManifestConfig{Entrypoint: "/a", EnclaveSize: "0"}, "not a positive number"},
		{"negative threads", ManifestConfig{Entrypoint: "/a", MaxThreads: -1}, "max threads is -1"},
		{"attestation", ManifestConfig{Entrypoint: "/a", RemoteAttestation: "epid"}, `remote attestation "epid"`},
		{"argv both", ManifestConfig{Entrypoint: "/a", Argv: []string{"a"}, ArgvSrcFile: unreadable}, "mutually exclusive"},
		{"argv nul", ManifestConfig{Entrypoint: "/a", Argv: []string{"a\x00b"}}, "NUL"},
		{"env name", ManifestConfig{Entrypoint: "/a", Env: map[string]string{"A=B": "c"}}, "environment variable name"},
		{"relative mount", ManifestConfig{Entrypoint: "/a", Mounts: []Mount{{Path: "lib", URI: "file:/lib"}}}, "manifest: mount 0 (lib): path must be absolute"},
		{"mount uri", ManifestConfig{Entrypoint: "/a", Mounts: []Mount{{Path: "/lib", URI: "/lib"}}}, `must start with "file:"`},
		{"mount type", ManifestConfig{Entrypoint: "/a", Mounts: []Mount{{Path: "/x", URI: "file:/x", Type: "nfs"}}}, `type "nfs"`},
		{"missing trusted", ManifestConfig{Entrypoint: "/a", TrustedFiles: []string{filepath.Join(dir, "nope")}}, "manifest: trusted file " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"missing trust config", ManifestConfig{Entrypoint: "/a", TrustConfig: []string{filepath.Join(dir, "nope")}}, "no such file or directory"},
		{"trusted device", ManifestConfig{Entrypoint: "/a", TrustedFiles: []string{"/dev/null"}}, "not a regular file or directory"},
		{"invalid utf8", ManifestConfig{Entrypoint: "/a\xff"}, "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteManifest(&bytes.Buffer{}, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
		})
	}
	if os.Geteuid() != 0 { // root reads everything
		os.Chmod(unreadable, 0)
		err := WriteManifest(&bytes.Buffer{}, ManifestConfig{Entrypoint: "/a", TrustedFiles: []string{dir}})
		if err == nil || !strings.Contains(err.Error(), "permission denied") || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("unreadable file in a trusted directory: %v", err)
		}
	}
}

func TestTOMLString(t *testing.T) {
	for _, s := range []string{"", "plain", `back\slash`, `"q"`, "tab\tnl\ncr\r", "ctl\x01\x1f\x7f", "unicode ü ✓", "#not a comment"} {
		doc := "k = " + tomlString(s) + "\n" + tomlKey(s+"x") + " = 1\n"
		var m map[string]any
		if err := toml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, doc)
		}
		if m["k"] != s {
			t.Errorf("round trip %q → %q", s, m["k"])
		}
		if _, ok := m[s+"x"]; !ok {
			t.Errorf("key %q lost: %v", s+"x", m)
		}
	}
}

func TestSerializeArgv(t *testing.T) {
	b, err := SerializeArgv([]string{"python3", "train.py", ""})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "python3\x00train.py\x00\x00" {
		t.Errorf("%q", b)
	}
	if _, err := SerializeArgv([]string{"a\x00"}); err == nil {
		t.Error("NUL accepted")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestWriteManifestWriterError(t *testing.T) {
	err := WriteManifest(failWriter{}, ManifestConfig{Entrypoint: "/a"})
	if err == nil || !strings.HasPrefix(err.Error(), "manifest: writing:") {
		t.Fatalf("%v", err)
	}
}

// TestManifestRoot: with Root, trusted paths are paths inside an image's
// root file system: hashed there, named without the root.
func TestManifestRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc", "teeml", "ws"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "usr", "local", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "usr", "local", "bin", "teeml"), []byte("binary"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "teeml", "ws", "plan.yaml"), []byte("rounds: 1\n"), 0o644)
	var buf bytes.Buffer
	err := WriteManifest(&buf, ManifestConfig{Root: root, Entrypoint: "/usr/local/bin/teeml", Argv: []string{"/usr/local/bin/teeml", "version"},
		TrustedFiles: []string{"/usr/local/bin/teeml"}, TrustConfig: []string{"/etc/teeml/ws"}, AllowedFiles: []string{"/tmp/out"}})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`{ uri = "file:/usr/local/bin/teeml", sha256 = "` + sha256hex([]byte("binary")) + `" }`,
		`{ uri = "file:/etc/teeml/ws/plan.yaml", sha256 = "` + sha256hex([]byte("rounds: 1\n")) + `" }`,
		`"file:/tmp/out"`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("manifest lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, root) {
		t.Fatalf("manifest names the host root %s:\n%s", root, out)
	}
	err = WriteManifest(&buf, ManifestConfig{Root: root, Entrypoint: "/usr/local/bin/teeml", TrustedFiles: []string{"usr/local/bin/teeml"}})
	if err == nil || !strings.Contains(err.Error(), "not an absolute path inside the root") {
		t.Fatalf("relative path with a root: %v", err)
	}
	err = WriteManifest(&buf, ManifestConfig{Root: root, Entrypoint: "/usr/local/bin/teeml", TrustConfig: []string{"/etc/teeml/ws"}, AllowedFiles: []string{"/etc/teeml/ws/plan.yaml"}})
	if err == nil || !strings.Contains(err.Error(), "overlaps trust-deciding config") {
		t.Fatalf("allowed file inside trust config under a root: %v", err)
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
