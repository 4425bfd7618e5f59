package workspace

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tree maps every file under dir (slash paths) to its content; directories
// map to "/".
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			out[rel] = "/"
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportImportRoundTrip(t *testing.T) {
	ws := newWS(t, "digits_cnn")
	if err := AddCollaborator(ws, "bank-a", "shard:0"); err != nil {
		t.Fatal(err)
	}
	hash, err := InitPlan(ws, "agg:7000")
	if err != nil {
		t.Fatal(err)
	}
	private := map[string]string{
		"agg-key.pem":           "KEY",
		"plan/tls.key":          "KEY",
		"certs/bank-a-key.pem":  "KEY",
		"data/bank-a.csv":       "secret,rows",
		"save/last.safetensors": "weights",
		"logs/agg.log":          "log",
	}
	for rel, content := range private {
		full := filepath.Join(ws, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(ws, "certs", "bank-a.pem"), []byte("CERT"), 0o644)

	out := filepath.Join(t.TempDir(), "ws.tar.gz")
	if err := Export(ws, out); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "ws2.tar.gz")
	if err := Export(ws, out2); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) {
		t.Error("export not deterministic")
	}
	dst := filepath.Join(t.TempDir(), "imported")
	if err := Import(out, dst); err != nil {
		t.Fatal(err)
	}
	want := tree(t, ws)
	for rel := range want {
		if _, ok := private[rel]; ok || strings.HasPrefix(rel, "save/") || strings.HasPrefix(rel, "plan/.") {
			delete(want, rel)
		}
	}
	got := tree(t, dst)
	for _, k := range sortedMapKeys(want) {
		if got[k] != want[k] {
			t.Errorf("%s: imported %q, want %q", k, got[k], want[k])
		}
	}
	for _, k := range sortedMapKeys(got) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s imported but should not be", k)
		}
	}
	for _, d := range []string{"data", "save", "logs"} {
		if got[d] != "/" {
			t.Errorf("%s/ missing after import", d)
		}
	}
	p, err := LoadPlan(dst)
	if err != nil || p.Hash() != hash {
		t.Fatalf("imported plan: %v", err)
	}
	// Importing into a non-empty directory is refused.
	if err := Import(out, dst); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("import over workspace: %v", err)
	}
	// Archives made with `tar -C ws .` (entries "./…") are accepted.
	dot := archiveOf(t, entry{tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		entry{tar.Header{Name: "./plan/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		file("./plan/plan.yaml", got["plan/plan.yaml"]))
	if err := Import(dot, filepath.Join(t.TempDir(), "dot")); err != nil {
		t.Errorf("./ archive: %v", err)
	}
	// A plan that does not match its hash is refused.
	tampered := archiveOf(t, file("plan/plan.yaml", strings.Replace(got["plan/plan.yaml"], "rounds_to_train: 10", "rounds_to_train: 99", 1)),
		file("plan/plan.hash", got["plan/plan.hash"]))
	tdst := filepath.Join(t.TempDir(), "tampered")
	if err := Import(tampered, tdst); err == nil || !strings.Contains(err.Error(), "frozen plan was modified") {
		t.Errorf("tampered archive: %v", err)
	}
	if _, err := os.Stat(tdst); err == nil {
		t.Error("tampered import left files")
	}
	// Symlinks are not exported.
	if err := os.Symlink("/etc/passwd", filepath.Join(ws, "plan", "link.yaml")); err == nil {
		if err := Export(ws, filepath.Join(t.TempDir(), "x.tar.gz")); err == nil || !strings.Contains(err.Error(), "plan/link.yaml") {
			t.Errorf("symlink exported: %v", err)
		}
	}
}

func sortedMapKeys(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	slices.Sort(k)
	return k
}

type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body}
}

func archiveOf(t *testing.T, entries ...entry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	path := filepath.Join(t.TempDir(), "a.tar.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestImportRefusesMalicious(t *testing.T) {
	plan := file("plan/plan.yaml", "x")
	old := limits
	defer func() { limits = old }()
	limits.file, limits.total, limits.entries = 100, 150, 5

	big := strings.Repeat("z", 101)
	cases := []struct {
		name    string
		entries []entry
		want    string
	}{
		{"absolute", []entry{plan, file("/etc/cron.d/x", "x")}, "absolute path"},
		{"dotdot", []entry{plan, file("../evil", "x")}, "'..' in path"},
		{"inner dotdot", []entry{plan, file("plan/../../evil", "x")}, "'..' in path"},
		{"backslash", []entry{plan, file(`..\evil`, "x")}, "backslash"},
		{"unclean", []entry{plan, file("plan//x", "x")}, "not a clean path"},
		{"dot inside", []entry{plan, file("plan/./x", "x")}, "not a clean path"},
		{"dot dotdot", []entry{plan, file("./../x", "x")}, "'..' in path"},
		{"symlink", []entry{{tar.Header{Name: "plan", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, ""}, plan}, "links are not allowed"},
		{"hardlink", []entry{plan, {tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "plan/plan.yaml"}, ""}}, "links are not allowed"},
		{"device", []entry{plan, {tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, ""}}, "not allowed"},
		{"fifo", []entry{plan, {tar.Header{Name: "fifo", Typeflag: tar.TypeFifo}, ""}}, "not allowed"},
		{"big file", []entry{plan, file("big", big)}, "101 bytes, at most 100"},
		{"total", []entry{plan, file("a", big[:80]), file("b", big[:80])}, "expands beyond 150"},
		{"entries", []entry{plan, file("a", ""), file("b", ""), file("c", ""), file("d", ""), file("e", "")}, "more than 5 entries"},
		{"duplicate", []entry{plan, file("plan/plan.yaml", "y")}, "duplicate entry"},
		{"file as dir", []entry{file("plan", "x"), plan}, "not a directory"},
		{"no plan", []entry{file("README", "x")}, "not a workspace archive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			arch := archiveOf(t, c.entries...)
			dst := filepath.Join(t.TempDir(), "out")
			err := Import(arch, dst)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want …%s…", err, c.want)
			}
			if _, err := os.Stat(dst); err == nil {
				t.Errorf("%s left behind", dst)
			}
		})
	}
	// Nothing escaped the destinations.
	if _, err := os.Stat(filepath.Join(os.TempDir(), "evil")); err == nil {
		t.Error("evil written")
	}

	// Oversized and corrupt archives.
	arch := archiveOf(t, plan)
	limits.archive = 10
	if err := Import(arch, filepath.Join(t.TempDir(), "o")); err == nil || !strings.Contains(err.Error(), "at most 10") {
		t.Errorf("oversized archive: %v", err)
	}
	limits.archive = old.archive
	junk := filepath.Join(t.TempDir(), "junk.tar.gz")
	os.WriteFile(junk, []byte("not gzip"), 0o644)
	if err := Import(junk, filepath.Join(t.TempDir(), "o")); err == nil {
		t.Error("junk accepted")
	}
	// A gzip bomb stops at the total limit without writing it all.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "plan/plan.yaml", Typeflag: tar.TypeReg, Size: 1 << 20, Mode: 0o644})
	tw.Write(make([]byte, 1<<20))
	tw.Close()
	zw.Close()
	bomb := filepath.Join(t.TempDir(), "bomb.tar.gz")
	os.WriteFile(bomb, buf.Bytes(), 0o644)
	if err := Import(bomb, filepath.Join(t.TempDir(), "o")); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Errorf("bomb: %v", err)
	}
	// Into an existing empty directory, which stays empty on failure.
	empty := t.TempDir()
	if err := Import(archiveOf(t, plan, file("../x", "")), empty); err == nil {
		t.Error("accepted")
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("failed import left %v", entries)
	}
}

// archiveNames lists the entry names of a tar.gz.
func archiveNames(t *testing.T, arch string) []string {
	t.Helper()
	f, err := os.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	return names
}

// TestExportLeavesRunStateAndImportRefusesIt reproduces issue 23 defect 3:
// the archive carried runs/<hash>/state/checkpoint (the global model),
// metrics.jsonl and kms/kms.db, and an aggregator started on the imported
// workspace resumed "round 5 of 5 completed" without training. Export now
// leaves every piece of run state behind, and Import refuses an archive
// carrying any of it with one line naming the entry, leaving nothing.
func TestExportLeavesRunStateAndImportRefusesIt(t *testing.T) {
	ws := newWS(t, "digits_cnn")
	if err := AddCollaborator(ws, "bank-a", "shard:0"); err != nil {
		t.Fatal(err)
	}
	if _, err := InitPlan(ws, "agg:7000"); err != nil {
		t.Fatal(err)
	}
	state := []string{
		"runs/0123456789abcdef/state/checkpoint.safetensors",
		"runs/0123456789abcdef/metrics.jsonl",
		"runs/0123456789abcdef/report.md",
		"metrics.jsonl",
		"kms/kms.db",
		"kms/kms.db-wal",
		"kms/audit.anchor",
		"broker.db",
		"plan/kms.sqlite",
	}
	for _, rel := range state {
		full := filepath.Join(ws, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte("state of "+rel), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "ws.tar.gz")
	if err := Export(ws, out); err != nil {
		t.Fatal(err)
	}
	names := archiveNames(t, out)
	if !slices.Contains(names, PlanFile) {
		t.Fatalf("export lacks %s: %v", PlanFile, names)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "runs") || strings.HasPrefix(n, "kms") || strings.HasSuffix(n, "metrics.jsonl") ||
			strings.Contains(n, ".db") || strings.HasSuffix(n, ".sqlite") || strings.HasSuffix(n, ".anchor") {
			t.Errorf("export carries run state %q", n)
		}
	}
	if err := Import(out, filepath.Join(t.TempDir(), "ok")); err != nil {
		t.Fatalf("import of the clean export: %v", err)
	}

	plan, err := os.ReadFile(filepath.Join(ws, filepath.FromSlash(PlanFile)))
	if err != nil {
		t.Fatal(err)
	}
	hash, err := os.ReadFile(filepath.Join(ws, filepath.FromSlash(HashFile)))
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range append(state, "runs/", "kms/") {
		t.Run(rel, func(t *testing.T) {
			e := file(rel, "x")
			if strings.HasSuffix(rel, "/") {
				e = entry{tar.Header{Name: rel, Typeflag: tar.TypeDir, Mode: 0o755}, ""}
			}
			arch := archiveOf(t, file(PlanFile, string(plan)), file(HashFile, string(hash)), e)
			dst := filepath.Join(t.TempDir(), "in")
			err := Import(arch, dst)
			if err == nil || !strings.Contains(err.Error(), "entry \""+rel+"\"") || !strings.Contains(err.Error(), "never travels") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("import of an archive with %s: %v", rel, err)
			}
			if _, err := os.Stat(dst); err == nil {
				t.Errorf("refused import left %s", dst)
			}
		})
	}
}
