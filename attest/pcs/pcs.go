// Package pcs fetches Intel DCAP collateral from the Intel Provisioning
// Certification Service (PCS, API v4) or a compatible caching service
// (PCCS): TCB Info, QE Identity, the PCK CRL — each with the issuer chain
// PCS returns in a response header — and the Root CA CRL. It can fill a
// collateral.Cache and serve as the collateral.Source of a DCAP verifier.
//
// The client does not verify what it fetches; the DCAP verifier checks every
// signature and chain against the pinned Intel root before use.
package pcs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/collateral"
)

// DefaultBaseURL is Intel's PCS.
const DefaultBaseURL = "https://api.trustedservices.intel.com"

// DefaultRootCACRLURL is the CRL distribution point of the Intel SGX Root
// CA.
const DefaultRootCACRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

// DefaultTimeout bounds each request when the client has no HTTPClient.
const DefaultTimeout = 30 * time.Second

// DefaultMaxBodySize bounds response bodies.
const DefaultMaxBodySize = 8 << 20

// Client talks to PCS. The zero value uses Intel's PCS with default
// timeouts; fields must not be changed while requests are in flight.
type Client struct {
	// BaseURL of the service, e.g. DefaultBaseURL or a PCCS such as
	// https://pccs.example:8081. Paths /sgx/certification/v4/... and
	// /tdx/certification/v4/... are appended.
	BaseURL string
	// RootCACRLURL is where the Root CA CRL is fetched (default
	// DefaultRootCACRLURL; for a PCCS, BaseURL + /sgx/certification/v4/rootcacrl).
	RootCACRLURL string
	// HTTPClient is used for requests; nil means a client with
	// DefaultTimeout. Every request also honours its context.
	HTTPClient *http.Client
	// APIKey, when set, is sent as Ocp-Apim-Subscription-Key (not needed
	// for the collateral endpoints).
	APIKey string
	// MaxBodySize bounds response bodies (default DefaultMaxBodySize).
	MaxBodySize int64
	// Cache, when set, is consulted and filled by Collateral.
	Cache *collateral.Cache
	// Now returns the current time for cache freshness (default time.Now).
	Now func() time.Time
	// MinValidity is how long cached collateral must still be valid to be
	// served from the cache (default 1h).
	MinValidity time.Duration

	defaultHTTPOnce sync.Once
	defaultHTTP     *http.Client
}

var _ collateral.Source = (*Client)(nil)

// HTTPError is returned for non-200 responses.
type HTTPError struct {
	URL        string
	StatusCode int
	Body       string // first bytes of the body
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("pcs: GET %s: HTTP %d: %s", e.URL, e.StatusCode, e.Body)
}

func (c *Client) base() string {
	if c.BaseURL == "" {
		return DefaultBaseURL
	}
	return strings.TrimRight(c.BaseURL, "/")
}

func (c *Client) http() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	c.defaultHTTPOnce.Do(func() { c.defaultHTTP = &http.Client{Timeout: DefaultTimeout} })
	return c.defaultHTTP
}

func (c *Client) maxBody() int64 {
	if c.MaxBodySize > 0 {
		return c.MaxBodySize
	}
	return DefaultMaxBodySize
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func teePath(tee attest.TEE) (string, error) {
	switch tee {
	case attest.SGX:
		return "sgx", nil
	case attest.TDX:
		return "tdx", nil
	}
	return "", fmt.Errorf("pcs: unsupported TEE %q", tee)
}

type response struct {
	body   []byte
	header http.Header
}

func (c *Client) get(ctx context.Context, u string) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("pcs: %w", err)
	}
	if c.APIKey != "" {
		req.Header.Set("Ocp-Apim-Subscription-Key", c.APIKey)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("pcs: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	limit := c.maxBody()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("pcs: GET %s: reading body: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		snippet := body
		if len(snippet) > 256 {
			snippet = snippet[:256]
		}
		return nil, &HTTPError{URL: u, StatusCode: resp.StatusCode, Body: string(snippet)}
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("pcs: GET %s: body exceeds %d bytes", u, limit)
	}
	return &response{body: body, header: resp.Header}, nil
}

// issuerChain reads a URL-encoded PEM chain header, trying the names in
// order. Percent escapes are decoded; '+' is kept (it is base64).
func issuerChain(h http.Header, names ...string) (string, error) {
	for _, n := range names {
		v := h.Get(n)
		if v == "" {
			continue
		}
		s, err := url.PathUnescape(v)
		if err != nil {
			return "", fmt.Errorf("pcs: header %s: %w", n, err)
		}
		if _, err := collateral.ParseCertChain(s); err != nil {
			return "", fmt.Errorf("pcs: header %s: %w", n, err)
		}
		return s, nil
	}
	return "", fmt.Errorf("pcs: response lacks issuer chain header %s", strings.Join(names, " / "))
}

// signedBody extracts the exact bytes of the member `field` and the hex
// signature from a PCS response such as {"tcbInfo":{...},"signature":"..."}.
func signedBody(body []byte, field string) ([]byte, []byte, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("pcs: response: %w", err)
	}
	raw, ok := m[field]
	if !ok || len(raw) == 0 || raw[0] != '{' {
		return nil, nil, fmt.Errorf("pcs: response lacks object %q", field)
	}
	var sigHex string
	if err := json.Unmarshal(m["signature"], &sigHex); err != nil {
		return nil, nil, fmt.Errorf("pcs: response lacks string \"signature\"")
	}
	sig, err := collateral.DecodeHex(sigHex)
	if err != nil {
		return nil, nil, fmt.Errorf("pcs: signature: %w", err)
	}
	if len(sig) != 64 {
		return nil, nil, fmt.Errorf("pcs: signature has %d bytes, want 64", len(sig))
	}
	return []byte(raw), sig, nil
}

// TCBInfo fetches the TCB Info for an FMSPC (12 hex digits): the exact
// signed body, its signature and the issuer chain.
func (c *Client) TCBInfo(ctx context.Context, tee attest.TEE, fmspc string) (body, sig []byte, chain string, err error) {
	p, err := teePath(tee)
	if err != nil {
		return nil, nil, "", err
	}
	if _, err := hex.DecodeString(fmspc); err != nil || len(fmspc) != 12 {
		return nil, nil, "", fmt.Errorf("pcs: FMSPC %q is not 12 hex digits", fmspc)
	}
	r, err := c.get(ctx, fmt.Sprintf("%s/%s/certification/v4/tcb?fmspc=%s", c.base(), p, url.QueryEscape(fmspc)))
	if err != nil {
		return nil, nil, "", err
	}
	if chain, err = issuerChain(r.header, "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"); err != nil {
		return nil, nil, "", err
	}
	if body, sig, err = signedBody(r.body, "tcbInfo"); err != nil {
		return nil, nil, "", err
	}
	return body, sig, chain, nil
}

// QEIdentity fetches the QE Identity (TEE sgx) or TD QE Identity (tdx).
func (c *Client) QEIdentity(ctx context.Context, tee attest.TEE) (body, sig []byte, chain string, err error) {
	p, err := teePath(tee)
	if err != nil {
		return nil, nil, "", err
	}
	r, err := c.get(ctx, fmt.Sprintf("%s/%s/certification/v4/qe/identity", c.base(), p))
	if err != nil {
		return nil, nil, "", err
	}
	if chain, err = issuerChain(r.header, "SGX-Enclave-Identity-Issuer-Chain", "Enclave-Identity-Issuer-Chain"); err != nil {
		return nil, nil, "", err
	}
	if body, sig, err = signedBody(r.body, "enclaveIdentity"); err != nil {
		return nil, nil, "", err
	}
	return body, sig, chain, nil
}

// crlDER accepts a CRL as DER, PEM or hex (PCCS variants) and returns DER.
func crlDER(b []byte) ([]byte, error) {
	t := bytes.TrimSpace(b)
	switch {
	case len(t) > 0 && t[0] == 0x30:
		if _, err := x509.ParseRevocationList(t); err == nil {
			return t, nil
		}
	case bytes.HasPrefix(t, []byte("-----BEGIN")):
		if blk, _ := pem.Decode(t); blk != nil && blk.Type == "X509 CRL" {
			if _, err := x509.ParseRevocationList(blk.Bytes); err == nil {
				return blk.Bytes, nil
			}
		}
	default:
		if d, err := collateral.DecodeHex(string(t)); err == nil {
			if _, err := x509.ParseRevocationList(d); err == nil {
				return d, nil
			}
		}
	}
	return nil, errors.New("pcs: response is not a CRL (DER, PEM or hex)")
}

// PCKCRL fetches the CRL of the PCK Processor or Platform CA
// (collateral.CAProcessor / CAPlatform) and its issuer chain.
func (c *Client) PCKCRL(ctx context.Context, ca string) (der []byte, chain string, err error) {
	if ca != collateral.CAProcessor && ca != collateral.CAPlatform {
		return nil, "", fmt.Errorf("pcs: CA %q is not %q or %q", ca, collateral.CAProcessor, collateral.CAPlatform)
	}
	r, err := c.get(ctx, fmt.Sprintf("%s/sgx/certification/v4/pckcrl?ca=%s&encoding=der", c.base(), ca))
	if err != nil {
		return nil, "", err
	}
	if chain, err = issuerChain(r.header, "SGX-PCK-CRL-Issuer-Chain"); err != nil {
		return nil, "", err
	}
	if der, err = crlDER(r.body); err != nil {
		return nil, "", err
	}
	return der, chain, nil
}

// RootCACRL fetches the Intel SGX Root CA CRL.
func (c *Client) RootCACRL(ctx context.Context) ([]byte, error) {
	u := c.RootCACRLURL
	if u == "" {
		u = DefaultRootCACRLURL
	}
	r, err := c.get(ctx, u)
	if err != nil {
		return nil, err
	}
	return crlDER(r.body)
}

// Fetch downloads the complete collateral for key.
func (c *Client) Fetch(ctx context.Context, key collateral.Key) (*collateral.Collateral, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	col := &collateral.Collateral{}
	var err error
	if col.TCBInfo, col.TCBInfoSignature, col.TCBInfoIssuerChain, err = c.TCBInfo(ctx, key.TEE, key.FMSPC); err != nil {
		return nil, err
	}
	if col.QEIdentity, col.QEIdentitySignature, col.QEIdentityIssuerChain, err = c.QEIdentity(ctx, key.TEE); err != nil {
		return nil, err
	}
	if col.PCKCRL, col.PCKCRLIssuerChain, err = c.PCKCRL(ctx, key.CA); err != nil {
		return nil, err
	}
	if col.RootCACRL, err = c.RootCACRL(ctx); err != nil {
		return nil, err
	}
	return col, nil
}

// Expiry returns the earliest nextUpdate of the collateral's TCB Info, QE
// Identity and CRLs.
func Expiry(col *collateral.Collateral) (time.Time, error) {
	var t time.Time
	upd := func(n time.Time) {
		if t.IsZero() || n.Before(t) {
			t = n
		}
	}
	ti, err := collateral.ParseTCBInfo(col.TCBInfo)
	if err != nil {
		return t, err
	}
	upd(ti.NextUpdate)
	qi, err := collateral.ParseQEIdentity(col.QEIdentity)
	if err != nil {
		return t, err
	}
	upd(qi.NextUpdate)
	for _, der := range [][]byte{col.RootCACRL, col.PCKCRL} {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return t, fmt.Errorf("pcs: CRL: %w", err)
		}
		upd(rl.NextUpdate)
	}
	return t, nil
}

func (c *Client) minValidity() time.Duration {
	if c.MinValidity > 0 {
		return c.MinValidity
	}
	return time.Hour
}

// Collateral implements collateral.Source: it serves collateral from the
// cache while it stays valid for at least MinValidity, and otherwise fetches
// it and stores it in the cache. Fetched collateral must parse and must not
// be expired already; its signatures are checked by the verifier.
func (c *Client) Collateral(ctx context.Context, key collateral.Key) (*collateral.Collateral, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if c.Cache != nil {
		if col, err := c.Cache.Get(key); err == nil {
			if exp, err := Expiry(col); err == nil && exp.After(c.now().Add(c.minValidity())) {
				return col, nil
			}
		}
	}
	col, err := c.Fetch(ctx, key)
	if err != nil {
		return nil, err
	}
	exp, err := Expiry(col)
	if err != nil {
		return nil, fmt.Errorf("pcs: fetched collateral for %s: %w", key, err)
	}
	if !exp.After(c.now()) {
		return nil, fmt.Errorf("pcs: fetched collateral for %s expired at %s", key, exp.UTC().Format(time.RFC3339))
	}
	if c.Cache != nil {
		if err := c.Cache.Put(key, col); err != nil {
			return nil, err
		}
	}
	return col, nil
}

// Refresh fetches the collateral for every key in the cache and stores it.
func (c *Client) Refresh(ctx context.Context) error {
	if c.Cache == nil {
		return errors.New("pcs: no cache")
	}
	keys, err := c.Cache.Keys()
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		col, err := c.Fetch(ctx, k)
		if err == nil {
			err = c.Cache.Put(k, col)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// RootCACRLURLFromRoot returns the CRL distribution point of the pinned
// Intel SGX Root CA certificate.
func RootCACRLURLFromRoot() (string, error) {
	root, err := dcap.IntelRootCA()
	if err != nil {
		return "", err
	}
	if len(root.CRLDistributionPoints) == 0 {
		return "", errors.New("pcs: root certificate has no CRL distribution point")
	}
	return root.CRLDistributionPoints[0], nil
}
