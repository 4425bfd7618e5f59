package contract

import (
	"strings"
	"testing"
)

// FuzzParse: any bytes give a contract or a one-line error, never a panic.
func FuzzParse(f *testing.F) {
	f.Add(example(f))
	f.Add(append(example(f), "  m:\n    tables: [bank_customers]\n    train: {model: rf, label: flagged, task: classification, trees: 5}\n    sql: SELECT balance, flagged FROM bank_customers\n"...))
	f.Add([]byte("contract: x\nmin_group_size: 1\n"))
	f.Add([]byte("contract: [\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "f.yaml")
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if c.SHA256 != Hash(b) || len(c.Templates) == 0 || len(c.Owners) == 0 {
			t.Fatalf("accepted an incomplete contract: %+v", c)
		}
		for _, tm := range c.Templates {
			if tr := tm.Train; tr != nil && (tr.MinLeaf < c.MinGroupSize || tm.Noise != nil) {
				t.Fatalf("training template %s: min_leaf %d below k %d, or noised", tm.Name, tr.MinLeaf, c.MinGroupSize)
			}
			for _, r := range paramRefs(tm.SQL) {
				if tm.param(r) == nil {
					t.Fatalf("template %s uses undeclared $%s", tm.Name, r)
				}
			}
		}
	})
}

// FuzzBind: any parameter text binds to a value of the declared type within
// its bounds, or is refused in one line.
func FuzzBind(f *testing.F) {
	c, err := Parse(example(f), "c.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"0", "1e308", "-0", "2024-02-29", "premium", "' OR 1=1 --", "\x00", "true", "9223372036854775808"} {
		f.Add("spend_by_segment", s)
		f.Add("flagged_shoppers", s)
		f.Add("noisy_spend_by_segment", s)
	}
	f.Fuzz(func(t *testing.T, tmpl, v string) {
		tm, ok := c.Templates[tmpl]
		if !ok {
			return
		}
		p := tm.Params[0]
		b, err := tm.Bind(map[string]string{p.Name: v})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") && !strings.ContainsAny(v, "\n\r") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		switch x := b.Args[p.Name].(type) {
		case float64:
			if p.Min != nil && x < *p.Min || p.Max != nil && x > *p.Max {
				t.Fatalf("%v out of bounds", x)
			}
		case string:
			found := false
			for _, e := range p.Enum {
				found = found || e == x
			}
			if len(p.Enum) > 0 && !found {
				t.Fatalf("%q not in enum", x)
			}
		}
	})
}
