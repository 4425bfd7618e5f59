package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/internal/yamlx"
)

// largePolicy accepts n SGX enclaves, entry i measuring enclaveN(i).
func largePolicy(n int) *Policy {
	r := &Role{TCBStatuses: []attest.TCBStatus{attest.UpToDate}}
	r.SGX = make([]SGXEntry, n)
	for i := range r.SGX {
		r.SGX[i] = SGXEntry{MREnclave: enclaveN(i), MRSigner: mrSigner}
	}
	return &Policy{Roles: map[string]*Role{"collaborator": r}}
}

func enclaveN(i int) []byte {
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b[24:], uint64(i)+1)
	return b
}

func largeClaims(mr []byte) *attest.Claims {
	return &attest.Claims{TEE: attest.SGX, MREnclave: mr, MRSigner: mrSigner, TCBStatus: attest.UpToDate}
}

// TestLargePolicyEvaluatesInLinearTime reproduces issue 23 defect 5: a
// slices.Contains inside the loop over entries made a refusal quadratic
// (20k entries 1.2 s, 40k 10.9 s, 200k over 110 s). 200 000 entries must
// now be decided — the worst case, no entry matching, and a match at the
// last entry — within a generous absolute bound (seconds, not minutes, also
// under -race), and the refusal stays one short line.
func TestLargePolicyEvaluatesInLinearTime(t *testing.T) {
	const n = 200_000
	p := largePolicy(n)
	for _, c := range []struct {
		name   string
		claims *attest.Claims
		accept bool
	}{
		{"no entry matches", largeClaims(rep(0xee, 32)), false},
		{"last entry matches", largeClaims(enclaveN(n - 1)), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			d := p.Evaluate("collaborator", c.claims)
			took := time.Since(start)
			t.Logf("%d entries: %v", n, took)
			if d.Accepted != c.accept {
				t.Fatalf("accepted %v, want %v: %s", d.Accepted, c.accept, d)
			}
			if c.accept && d.MatchedEntry != n-1 {
				t.Errorf("matched entry %d, want %d", d.MatchedEntry, n-1)
			}
			if took > 5*time.Second {
				t.Errorf("evaluating %d entries took %v: not linear", n, took)
			}
			if s := d.String(); len(s) > 4096 || strings.Contains(s, "\n") {
				t.Errorf("decision is %d bytes or several lines: %.300s…", len(s), s)
			}
			if !c.accept && !strings.Contains(d.String(), "and 199984 more") {
				t.Errorf("refusal does not count the unlisted entries: %.300s", d)
			}
		})
	}
}

// BenchmarkLargePolicyRefusal: go test -bench LargePolicy ./attest/policy/
func BenchmarkLargePolicyRefusal(b *testing.B) {
	for _, n := range []int{20_000, 40_000, 200_000} {
		p := largePolicy(n)
		c := largeClaims(rep(0xee, 32))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if p.Evaluate("collaborator", c).Accepted {
					b.Fatal("accepted")
				}
			}
		})
	}
}

// TestEvaluationStopsWhenContextEnds: a cancelled context (SIGTERM in a
// command) stops a long evaluation with a refusal naming why.
func TestEvaluationStopsWhenContextEnds(t *testing.T) {
	p := largePolicy(200_000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := p.Evaluate("collaborator", largeClaims(enclaveN(199_999)), Context(ctx))
	if d.Accepted || !strings.Contains(d.String(), "evaluation stopped after 1024 of 200000 sgx entries: context canceled") {
		t.Fatalf("cancelled evaluation: %s", d)
	}
	// A live context changes nothing.
	if d := p.Evaluate("collaborator", largeClaims(enclaveN(199_999)), Context(context.Background())); !d.Accepted {
		t.Fatalf("live context: %s", d)
	}
}

// TestPolicyFileOverCapIsRefused: policy files had no size cap (a 300 MB
// file took 1.7 GB of memory). A file over MaxSize is refused naming the
// file and the cap, after reading no more than the cap.
func TestPolicyFileOverCapIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// 300 MB, sparse: cheap to make; read whole it would take the memory.
	if err := f.Truncate(300 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Load(path)
	want := fmt.Sprintf("%s: policy is larger than %d bytes (the size cap)", path, MaxSize)
	if err == nil || err.Error() != want || !errors.Is(err, yamlx.ErrTooLarge) {
		t.Fatalf("over-cap policy: %v, want %q", err, want)
	}
	// Bytes over the cap are refused by Parse too.
	big := "roles: {}\n" + strings.Repeat("#", MaxSize)
	if _, err := Parse([]byte(big), "big.yaml"); err == nil || !strings.Contains(err.Error(), "big.yaml: policy is") || !errors.Is(err, yamlx.ErrTooLarge) {
		t.Fatalf("over-cap bytes: %v", err)
	}
	// Exactly at the cap is read (and then judged on its content).
	at := filepath.Join(t.TempDir(), "at.yaml")
	os.WriteFile(at, []byte(testYAML+strings.Repeat("#", MaxSize-len(testYAML))), 0o644)
	if _, err := Load(at); err != nil {
		t.Fatalf("policy of exactly MaxSize bytes: %v", err)
	}
}
