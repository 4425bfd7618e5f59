package pcs_test

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/dcap/dcaptest"
	"github.com/teeml/teeml/attest/pcs"
)

var sampleNow = dcaptest.VerifyTime

type sample struct {
	key   collateral.Key
	quote []byte
	col   *collateral.Collateral
}

func loadSamples(t *testing.T) []sample {
	t.Helper()
	var out []sample
	for _, s := range []struct {
		dir string
		key collateral.Key
	}{
		{"sgx-dcap", collateral.Key{TEE: attest.SGX, FMSPC: "00A067110000", CA: collateral.CAProcessor}},
		{"tdx-dcap", collateral.Key{TEE: attest.TDX, FMSPC: "B0C06F000000", CA: collateral.CAPlatform}},
	} {
		col, err := collateral.Parse(dcaptest.Read(t, s.dir+"/collateral.json"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sample{s.key, dcaptest.Read(t, s.dir+"/quote.bin"), col})
	}
	return out
}

// fakePCS serves the samples' collateral the way Intel's PCS API v4 does.
type fakePCS struct {
	t        *testing.T
	samples  []sample
	requests atomic.Int64
	apiKeys  sync.Map
	rootCRL  func(der []byte) []byte // encoding of the root CRL response
	hook     func(w http.ResponseWriter, r *http.Request) bool
}

func (f *fakePCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if k := r.Header.Get("Ocp-Apim-Subscription-Key"); k != "" {
		f.apiKeys.Store(k, true)
	}
	if f.hook != nil && f.hook(w, r) {
		return
	}
	find := func(pred func(s sample) bool) *sample {
		for i := range f.samples {
			if pred(f.samples[i]) {
				return &f.samples[i]
			}
		}
		return nil
	}
	signed := func(field string, body, sig []byte) []byte {
		return []byte(`{"` + field + `":` + string(body) + `,"signature":"` + hex.EncodeToString(sig) + `"}`)
	}
	q := r.URL.Query()
	switch p := r.URL.Path; {
	case p == "/sgx/certification/v4/tcb" || p == "/tdx/certification/v4/tcb":
		tee := attest.TEE(strings.Split(p, "/")[1])
		s := find(func(s sample) bool { return s.key.TEE == tee && s.key.FMSPC == q.Get("fmspc") })
		if s == nil {
			http.Error(w, "no such FMSPC", http.StatusNotFound)
			return
		}
		w.Header().Set("TCB-Info-Issuer-Chain", url.PathEscape(s.col.TCBInfoIssuerChain))
		w.Write(signed("tcbInfo", s.col.TCBInfo, s.col.TCBInfoSignature))
	case p == "/sgx/certification/v4/qe/identity" || p == "/tdx/certification/v4/qe/identity":
		tee := attest.TEE(strings.Split(p, "/")[1])
		s := find(func(s sample) bool { return s.key.TEE == tee })
		w.Header().Set("SGX-Enclave-Identity-Issuer-Chain", url.PathEscape(s.col.QEIdentityIssuerChain))
		w.Write(signed("enclaveIdentity", s.col.QEIdentity, s.col.QEIdentitySignature))
	case p == "/sgx/certification/v4/pckcrl":
		if q.Get("encoding") != "der" {
			http.Error(w, "want der", http.StatusBadRequest)
			return
		}
		s := find(func(s sample) bool { return s.key.CA == q.Get("ca") })
		if s == nil {
			http.Error(w, "bad ca", http.StatusBadRequest)
			return
		}
		w.Header().Set("SGX-PCK-CRL-Issuer-Chain", url.PathEscape(s.col.PCKCRLIssuerChain))
		w.Write(s.col.PCKCRL)
	case p == "/IntelSGXRootCA.der":
		der := f.samples[0].col.RootCACRL
		if f.rootCRL != nil {
			w.Write(f.rootCRL(der))
			return
		}
		w.Write(der)
	default:
		http.NotFound(w, r)
	}
}

func newServer(t *testing.T) (*fakePCS, *pcs.Client) {
	t.Helper()
	f := &fakePCS{t: t, samples: loadSamples(t)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := &pcs.Client{BaseURL: srv.URL + "/", RootCACRLURL: srv.URL + "/IntelSGXRootCA.der",
		HTTPClient: srv.Client(), Now: func() time.Time { return sampleNow }}
	return f, c
}

func TestFetchMatchesSamples(t *testing.T) {
	f, c := newServer(t)
	for _, s := range f.samples {
		col, err := c.Fetch(context.Background(), s.key)
		if err != nil {
			t.Fatal(err)
		}
		if col.Digest() != s.col.Digest() {
			t.Errorf("%s: fetched collateral differs from the sample", s.key)
		}
	}
}

func TestVerifierWithPCSSource(t *testing.T) {
	f, c := newServer(t)
	cache, err := collateral.NewCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Cache = cache
	for _, s := range f.samples {
		v, err := dcap.New(s.key.TEE, &dcap.Options{Source: c})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := v.Verify(context.Background(), &attest.Evidence{TEE: s.key.TEE, Quote: s.quote}, sampleNow)
		if err != nil {
			t.Fatalf("%s: %v", s.key, err)
		}
		if claims.FMSPC != s.key.FMSPC {
			t.Errorf("FMSPC %s", claims.FMSPC)
		}
		if _, err := cache.Get(s.key); err != nil {
			t.Errorf("%s not cached: %v", s.key, err)
		}
	}
}

func TestCollateralCaching(t *testing.T) {
	f, c := newServer(t)
	cache, err := collateral.NewCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Cache = cache
	key := f.samples[0].key
	if _, err := c.Collateral(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if n := f.requests.Load(); n != 4 {
		t.Errorf("first Collateral made %d requests, want 4", n)
	}
	if _, err := c.Collateral(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if n := f.requests.Load(); n != 4 {
		t.Errorf("cached Collateral made %d requests in total, want 4", n)
	}
	// Close to expiry the client refetches; what PCS serves here is past its
	// nextUpdate at that time too, so it is refused and not cached.
	c.Now = func() time.Time { return time.Date(2025, 7, 19, 10, 30, 0, 0, time.UTC) }
	if _, err := c.Collateral(context.Background(), key); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired fetch: %v", err)
	}
	if n := f.requests.Load(); n != 8 {
		t.Errorf("refetch made %d requests in total, want 8", n)
	}
	exp, err := pcs.Expiry(f.samples[0].col)
	if err != nil || !exp.Equal(time.Date(2025, 7, 19, 10, 1, 18, 0, time.UTC)) {
		t.Errorf("Expiry = %v, %v", exp, err)
	}
	c.Now = func() time.Time { return sampleNow }
	if err := c.Refresh(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestRootCRLEncodings(t *testing.T) {
	f, c := newServer(t)
	want := f.samples[0].col.RootCACRL
	for name, enc := range map[string]func([]byte) []byte{
		"hex":       func(d []byte) []byte { return []byte(hex.EncodeToString(d) + "\n") },
		"HEX":       func(d []byte) []byte { return []byte(strings.ToUpper(hex.EncodeToString(d))) },
		"pem":       func(d []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: d}) },
		"der":       func(d []byte) []byte { return d },
		"junk":      func([]byte) []byte { return []byte("not a crl") },
		"truncated": func(d []byte) []byte { return d[:len(d)-1] },
	} {
		f.rootCRL = enc
		got, err := c.RootCACRL(context.Background())
		bad := name == "junk" || name == "truncated"
		if bad != (err != nil) || (!bad && string(got) != string(want)) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestErrors(t *testing.T) {
	f, c := newServer(t)
	ctx := context.Background()
	key := f.samples[0].key

	unknown := key
	unknown.FMSPC = "FFFFFFFFFFFF"
	_, err := c.Fetch(ctx, unknown)
	var he *pcs.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Errorf("unknown FMSPC: %v", err)
	}
	for _, k := range []collateral.Key{{TEE: "snp", FMSPC: key.FMSPC, CA: key.CA}, {TEE: attest.SGX, FMSPC: "x", CA: key.CA}, {TEE: attest.SGX, FMSPC: key.FMSPC, CA: "root"}} {
		if _, err := c.Collateral(ctx, k); err == nil {
			t.Errorf("key %v accepted", k)
		}
	}
	if f.requests.Load() != 1 {
		t.Errorf("invalid keys caused requests")
	}
	for name, hook := range map[string]func(w http.ResponseWriter, r *http.Request) bool{
		"no chain header": func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/tcb") {
				w.Write([]byte(`{"tcbInfo":{},"signature":"00"}`))
				return true
			}
			return false
		},
		"bad chain header": func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("TCB-Info-Issuer-Chain", "%zz")
			w.Header().Set("SGX-Enclave-Identity-Issuer-Chain", "-----BEGIN CERTIFICATE-----")
			w.Header().Set("SGX-PCK-CRL-Issuer-Chain", "x")
			w.Write([]byte(`{}`))
			return true
		},
		"bad json": func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/tcb") {
				w.Header().Set("TCB-Info-Issuer-Chain", url.PathEscape(f.samples[0].col.TCBInfoIssuerChain))
				w.Write([]byte(`{"tcbInfo":`))
				return true
			}
			return false
		},
		"short signature": func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/tcb") {
				w.Header().Set("TCB-Info-Issuer-Chain", url.PathEscape(f.samples[0].col.TCBInfoIssuerChain))
				w.Write([]byte(`{"tcbInfo":{"id":"SGX"},"signature":"abcd"}`))
				return true
			}
			return false
		},
		"server error": func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, strings.Repeat("x", 1000), http.StatusInternalServerError)
			return true
		},
	} {
		f.hook = hook
		if _, err := c.Fetch(ctx, key); err == nil {
			t.Errorf("%s: accepted", name)
		} else if len(err.Error()) > 600 {
			t.Errorf("%s: error too long (%d)", name, len(err.Error()))
		}
	}
	f.hook = nil

	c.MaxBodySize = 100
	if _, err := c.Fetch(ctx, key); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized body: %v", err)
	}
	c.MaxBodySize = 0

	c.APIKey = "secret-key"
	if _, err := c.Fetch(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.apiKeys.Load("secret-key"); !ok {
		t.Error("API key not sent")
	}
}

func TestTimeouts(t *testing.T) {
	f, c := newServer(t)
	release := make(chan struct{})
	defer close(release)
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Fetch(ctx, f.samples[0].key); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("context timeout: %v", err)
	}
	// The client's own timeout applies without a context deadline.
	c.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond}
	if _, err := c.Fetch(context.Background(), f.samples[0].key); err == nil {
		t.Error("client timeout not applied")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeouts took %v", d)
	}
}

func TestDefaults(t *testing.T) {
	u, err := pcs.RootCACRLURLFromRoot()
	if err != nil || u != pcs.DefaultRootCACRLURL {
		t.Errorf("root CRL URL %q, %v", u, err)
	}
	// The zero client targets Intel's PCS; an invalid key fails before any
	// request is made.
	var c pcs.Client
	if _, err := c.Collateral(context.Background(), collateral.Key{}); err == nil {
		t.Error("zero key accepted")
	}
	if err := c.Refresh(context.Background()); err == nil {
		t.Error("Refresh without cache accepted")
	}
}
