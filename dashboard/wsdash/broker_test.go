package wsdash_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeml/teeml/dashboard/wsdash"
	"github.com/teeml/teeml/internal/testlog"
	"github.com/teeml/teeml/kms/store"
)

// TestBrokerDashboardShowsATamperedChain: the key broker's dashboard
// (`teeml kms serve --ui-addr`) shows the quickstart broker's audit chain
// verified; after one audit entry is edited in the store (a granted
// release turned into a refusal) the page says NOT verified and why.
func TestBrokerDashboardShowsATamperedChain(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "ws")
	copyWorkspace(t, quickstart(t), ws)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := wsdash.StartBroker(ctx, wsdash.BrokerOptions{KMSConfig: filepath.Join(ws, "kms.yaml"), Addr: "127.0.0.1:0", Logger: testlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // self-signed server certificate
	page := func(path string) string {
		t.Helper()
		resp, err := c.Get(r.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	page(strings.TrimPrefix(r.Dashboard.LoginURL(r.URL()), r.URL()))
	if p := page("/kms"); !strings.Contains(p, `id="chain-status">verified<`) || !strings.Contains(p, "audit anchor at entry") {
		t.Fatalf("intact store: chain not shown verified:\n%s", p)
	}
	if p := page("/federation"); !strings.Contains(p, `data-member="kms"`) {
		t.Errorf("the broker's federation is not shown")
	}
	st, err := store.Open(ctx, store.Config{Driver: "sqlite", Path: filepath.Join(ws, "kms", "kms.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, `UPDATE kms_audit SET body = CAST(REPLACE(CAST(body AS TEXT), '"granted"', '"refused"') AS BLOB) WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	p := page("/kms")
	if !strings.Contains(p, `id="chain-status">NOT verified<`) || !strings.Contains(p, "entry 3") {
		t.Errorf("edited entry 3: the page does not say the chain fails there:\n%s", p)
	}
	t.Logf("chain: %s", p[strings.Index(p, `id="chain-detail">`):][:160])
}
