package image

import (
	"testing"
)

// FuzzCheckTrusted: the Gramine manifest read out of an untrusted image
// never panics, and is accepted only when every trusted file matches.
func FuzzCheckTrusted(f *testing.F) {
	files := map[string]fileInfo{
		"/usr/local/bin/teeml": {sha256: sha256Of([]byte("bin"))},
		"/etc/teeml/plan.yaml": {sha256: sha256Of([]byte("plan"))},
	}
	good := "sgx.trusted_files = [\n  { uri = \"file:/usr/local/bin/teeml\", sha256 = \"" + sha256Of([]byte("bin")) + "\" },\n]\n"
	f.Add([]byte(good))
	f.Add([]byte("sgx.trusted_files = []\n"))
	f.Add([]byte("sgx.trusted_files = [ { uri = \"file:relative\", sha256 = \"00\" } ]\n"))
	f.Add([]byte("[sgx\n"))
	f.Fuzz(func(t *testing.T, m []byte) {
		n, err := checkTrusted(m, files)
		if err == nil && n == 0 {
			t.Fatal("accepted a manifest without trusted files")
		}
		if err != nil && n != 0 {
			t.Fatalf("error %v with count %d", err, n)
		}
	})
}
