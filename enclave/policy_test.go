package enclave

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestPolicyEntry(t *testing.T) {
	s := signedTestSigstruct(t)
	info := s.Info()
	p := PolicyEntry(info)
	if p.MREnclave != info.MREnclave || p.MRSigner != info.MRSigner || p.ISVProdID != 7 || p.MinISVSVN != 3 {
		t.Fatalf("%+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"mr_enclave":"` + info.MREnclave.String() + `","mr_signer":"` + info.MRSigner.String() + `","isv_prod_id":7,"min_isv_svn":3}`
	if string(b) != want {
		t.Fatalf("JSON %s\nwant %s", b, want)
	}
	var back AllowedEnclave
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != p {
		t.Fatal("JSON round trip differs")
	}
}

func TestPolicyEntryYAML(t *testing.T) {
	for _, p := range []AllowedEnclave{
		PolicyEntry(signedTestSigstruct(t).Info()),
		// All-digit hex must stay a string in YAML, not become a number.
		{MREnclave: Measurement(bytes.Repeat([]byte{0x11}, 32)), MRSigner: Measurement{}, ISVProdID: 1, MinISVSVN: 65535},
		{MREnclave: Measurement(append([]byte{0x1e}, bytes.Repeat([]byte{0x55}, 31)...))},
	} {
		b, err := yaml.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back AllowedEnclave
		if err := yaml.Unmarshal(b, &back); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		if back != p {
			t.Fatalf("YAML round trip differs:\n%s", b)
		}
		for _, k := range []string{"mr_enclave:", "mr_signer:", "isv_prod_id:", "min_isv_svn:"} {
			if !strings.Contains(string(b), k) {
				t.Errorf("YAML lacks %s:\n%s", k, b)
			}
		}
	}
}
