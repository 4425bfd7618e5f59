package contract

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/fedtest"
	"github.com/teeml/teeml/internal/yamlx"
)

func recipientKey(t testing.TB) *ecdh.PrivateKey {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func example(t testing.TB) []byte {
	return Example(ExampleOptions{
		Attestation: fedtest.SimRole("", fedtest.MRGood),
		Recipients:  map[string]*ecdh.PublicKey{"bank": recipientKey(t).PublicKey(), "retailer": recipientKey(t).PublicKey()},
		BankEpsilon: 3, RetailEpsilon: 2, MinGroupSize: 5,
	})
}

func TestParseExample(t *testing.T) {
	raw := example(t)
	c, err := Parse(raw, "contract.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "bank-retail-demo" || c.MinGroupSize != 5 || len(c.Templates) != 4 || c.SHA256 != Hash(raw) {
		t.Fatalf("parsed %+v", c)
	}
	if tr := c.Templates["segment_model"].Train; tr == nil || tr.Model != "gbdt" || tr.Label != "segment" || tr.MinLeaf != 12 || tr.Trees != 30 {
		t.Fatalf("training template segment_model: %+v", tr)
	}
	if o, ok := c.OwnerOfKey("retail-data"); !ok || o != "retailer" {
		t.Fatalf("owner of retail-data: %q %v", o, ok)
	}
	tm, err := c.Template("noisy_spend_by_segment")
	if err != nil {
		t.Fatal(err)
	}
	if tm.Noise == nil || tm.Noise.Epsilon != 1 || len(tm.Noise.Columns) != 2 || tm.Noise.Columns[1].Sensitivity() != 5000 {
		t.Fatalf("noise %+v", tm.Noise)
	}
	if got := c.OwnersOf(tm); strings.Join(got, ",") != "bank,retailer" {
		t.Fatalf("owners of template: %v", got)
	}
	if _, err := c.Template("dump_everything"); err == nil || !strings.Contains(err.Error(), `template "dump_everything" is not in the contract`) {
		t.Fatalf("unknown template: %v", err)
	}
	if d := c.Analytics.Policy.Evaluate(AnalyticsRole, nil); d.Err() == nil {
		t.Fatal("analytics policy accepted no claims")
	}
}

func TestParseRefusals(t *testing.T) {
	base := string(example(t))
	cases := []struct{ name, old, new, want string }{
		{"unknown key", "min_group_size: 5", "min_group_size: 5\nextra: 1", "extra"},
		{"k zero", "min_group_size: 5", "min_group_size: 0", "min_group_size: must be at least 1"},
		{"table owner", "    owner: retailer\n", "    owner: shop\n", `"shop" is not one of the owners`},
		{"column type", "balance: DOUBLE", "balance: MONEY", `type "MONEY"`},
		{"undeclared param", "WHERE b.balance >= $min_balance", "WHERE b.balance >= $min_balance AND b.balance < $cap", "$cap is not declared"},
		{"unused param", "WHERE b.flagged AND r.segment = $segment", "WHERE b.flagged", "declared but the SQL never uses $segment"},
		{"positional", "WHERE b.balance >= $min_balance", "WHERE b.balance >= $min_balance AND b.balance > ?", "positional parameters"},
		{"unknown table", "    tables: [bank_customers, retail_customers]\n    params:\n      segment", "    tables: [bank_customers, loans]\n    params:\n      segment", `"loans" is not one of the contract's tables`},
		{"noise too costly", "      epsilon: 1\n", "      epsilon: 2.5\n", "more than owner retailer's whole budget"},
		{"sum without bound", "total_spend: {kind: sum, bound: 5000}", "total_spend: {kind: sum}", "a sum needs bound > 0"},
		{"owner as analyst", "members: [analytics]", "members: [bank]", "is a data owner"},
		{"param type", "{type: date}", "{type: timestamp}", `"timestamp": want integer`},
		{"same key", "key: retail-data", "key: bank-data", "each owner seals under its own key"},
		{"no group size", "    group_size: customers\n    sql: |\n      SELECT r.segment, COUNT(*) AS customers, ROUND(SUM", "    sql: |\n      SELECT r.segment, COUNT(*) AS customers, ROUND(SUM", "group_size: missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.old) {
				t.Fatalf("test case: %q not in the example", tc.old)
			}
			src := strings.Replace(base, tc.old, tc.new, 1)
			_, err := Parse([]byte(src), "c.yaml")
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || !errors.Is(err, ErrContract) {
				t.Fatalf("error %q, want one line containing %q (and ErrContract)", err, tc.want)
			}
			var ye *yamlx.Error
			if errors.As(err, &ye) && ye.Line == 0 && tc.name != "unknown key" {
				t.Errorf("error has no line: %v", err)
			}
		})
	}
}

func TestBind(t *testing.T) {
	c, err := Parse(example(t), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tm := c.Templates["spend_by_segment"]
	b, err := tm.Bind(map[string]string{"min_balance": "1000.5"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Args["min_balance"] != 1000.5 {
		t.Fatalf("args %v", b.Args)
	}
	if got := string(b.Canonical()); got != `{"template":"spend_by_segment","params":{"min_balance":"1000.5"}}` {
		t.Fatalf("canonical %s", got)
	}
	for _, tc := range []struct {
		tmpl string
		v    map[string]string
		want string
	}{
		{"spend_by_segment", map[string]string{}, "parameter min_balance (double) not given"},
		{"spend_by_segment", map[string]string{"min_balance": "-1"}, "below the minimum 0"},
		{"spend_by_segment", map[string]string{"min_balance": "NaN"}, "not a finite number"},
		{"spend_by_segment", map[string]string{"min_balance": "1", "x": "2"}, "unknown parameter x"},
		{"flagged_shoppers", map[string]string{"segment": "' OR 1=1 --"}, "is not one of budget, family, premium, student"},
		{"noisy_spend_by_segment", map[string]string{"since": "2024-13-01"}, "not a date"},
	} {
		if _, err := c.Templates[tc.tmpl].Bind(tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want %q", tc.tmpl, tc.v, err, tc.want)
		}
	}
	d, err := c.Templates["noisy_spend_by_segment"].Bind(map[string]string{"since": "2024-02-29"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Args["since"].(time.Time).Equal(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("date %v", d.Args["since"])
	}
}

func TestParamRefsSkipLiterals(t *testing.T) {
	got := paramRefs(`SELECT '$a', "$b", $c -- $d
	/* $e */ , $f_1 FROM t WHERE x = 'it''s $g'`)
	if strings.Join(got, ",") != "c,f_1" {
		t.Fatalf("refs %v", got)
	}
}

func TestSignatures(t *testing.T) {
	env := fedtest.New(t, fedtest.Options{Members: []fedtest.Party{{Name: "bank", Role: "owner"}, {Name: "retailer", Role: "owner"},
		{Name: "analytics", Role: "analytics"}, {Name: "gone", Role: "owner"}}, Revoke: []string{"gone"}})
	raw := example(t)
	c, err := Parse(raw, "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(name string, raw []byte) []byte {
		m := env.Members[name]
		b, err := Sign(raw, m.Issued.Cert, m.Key, now)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	both := append(sign("bank", raw), sign("retailer", raw)...)
	sigs, err := ParseSignatures(both)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := VerifySignatures(c, sigs, env.Fed, now)
	if err != nil {
		t.Fatal(err)
	}
	if ids["bank"] == nil || ids["retailer"] == nil {
		t.Fatalf("identities %v", ids)
	}
	check := func(name string, sigPEM []byte, want string) {
		t.Helper()
		s, err := ParseSignatures(sigPEM)
		if err == nil {
			_, err = VerifySignatures(c, s, env.Fed, now)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	check("one owner missing", sign("bank", raw), "owner retailer: has not signed")
	changed := append([]byte{}, raw...)
	changed[len(changed)-2] ^= 1
	check("other bytes signed", append(sign("bank", raw), sign("retailer", changed)...), "owner retailer: signed contract sha256")
	check("revoked signer", append(sign("bank", raw), sign("gone", raw)...), "revoked")
	// An identity certificate presented as its own signature.
	m := env.Members["retailer"]
	check("not a signature", append(sign("bank", raw), append(m.Issued.CertPEM, m.Issued.CertPEM...)...), "retailer")
	check("odd count", m.Issued.CertPEM, "want pairs")
	check("junk", []byte("hello"), "trailing data")
	// The analytics party's approval is allowed but not required.
	if s, _ := ParseSignatures(append(both, sign("analytics", raw)...)); s != nil {
		if _, err := VerifySignatures(c, s, env.Fed, now); err != nil {
			t.Errorf("extra approval refused: %v", err)
		}
	}
	// A changed contract: every signature is refused.
	c2, err := Parse(changed, "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifySignatures(c2, sigs, env.Fed, now); err == nil || !strings.Contains(err.Error(), "the contract changed after it was signed") {
		t.Errorf("changed contract: %v", err)
	}
}
