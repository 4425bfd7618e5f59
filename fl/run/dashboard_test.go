package run

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeml/teeml/internal/testenv"
)

// TestAggregatorDashboard: with UIAddr the aggregator serves the
// dashboard; an open event stream gets one update per round as the round
// closes (pushed by the aggregator, not found by polling), and the FL page
// then shows the round.
//
// GoMLX's kernels trip -race's checkptr: see TestFederationInProcess.
func TestAggregatorDashboard(t *testing.T) {
	ws := setup(t, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var aggOut lockedBuf
	aggErr := make(chan error, 1)
	go func() {
		aggErr <- RunAggregator(ctx, AggregatorOptions{Workspace: ws, UIAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Out: &aggOut, Logger: quietLog()})
	}()
	loginRE := regexp.MustCompile(`dashboard: one-time login: (https://\S+)`)
	var login string
	testenv.Eventually(t, 30*time.Second, "the aggregator's dashboard login line", func() bool {
		m := loginRE.FindStringSubmatch(aggOut.String())
		if m != nil {
			login = m[1]
		}
		return m != nil
	})
	base := strings.TrimSuffix(login[:strings.Index(login, "/login")], "/")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // self-signed server certificate
	resp, err := c.Get(login)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", base+"/events", nil)
	ev, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Body.Close()
	updates := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(ev.Body)
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok && e == "update" {
				// Read the page at the update, before the next round.
				p, err := c.Get(base + "/fl?partial=1")
				if err != nil {
					updates <- "error: " + err.Error()
					continue
				}
				b, _ := io.ReadAll(p.Body)
				p.Body.Close()
				updates <- string(b)
			}
		}
		close(updates)
	}()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range []string{"col-1", "col-2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = RunCollaborator(ctx, CollaboratorOptions{Workspace: ws, Name: n, ConnectTimeout: 30 * time.Second, Logger: quietLog()})
		}()
	}
	seen := map[string]bool{}
	for round := 1; round <= 2; {
		select {
		case page, ok := <-updates:
			if !ok {
				t.Fatalf("event stream ended before round %d was pushed", round)
			}
			for _, r := range []string{"1", "2"} {
				if strings.Contains(page, `<tr data-round="`+r+`"><td>`+r+`</td><td>`) {
					seen[r] = true
				}
			}
			for seen[string(rune('0'+round))] {
				round++
			}
		case <-ctx.Done():
			t.Fatalf("round %d not pushed to the dashboard", round)
		}
	}
	// The dashboard's own metrics are on the aggregator's /metrics.
	mm := regexp.MustCompile(`Prometheus metrics: (http://\S+)`).FindStringSubmatch(aggOut.String())
	if mm == nil {
		t.Fatal("no metrics address printed")
	}
	mresp, err := http.Get(mm[1])
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(mb), `teeml_dashboard_requests_total{code="303",page="/login"} 1`) || !strings.Contains(string(mb), "teeml_dashboard_event_streams 1") {
		t.Errorf("the aggregator's /metrics lacks the dashboard's:\n%s", mb)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("col-%d: %v", i+1, err)
		}
	}
	scancel()
	if err := <-aggErr; err != nil {
		t.Fatalf("aggregator: %v\n%s", err, aggOut.String())
	}
}
