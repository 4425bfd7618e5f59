// Package client is a Go client of teeml serve's REST API that sends no
// input before the server's RA-TLS evidence satisfied the caller's policy
// (the TLS configuration comes from party.ClientTLS).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one server.
type Client struct {
	base   string
	token  string
	http   *http.Client
	closer func() // stops the client's certificate renewal (identity clients)
}

// New returns a client of the server at base (https://host:port) whose
// connections use tc (verifying the server's attestation) and token.
func New(base string, tc *tls.Config, token string) *Client {
	tr := &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, ForceAttemptHTTP2: false}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Transport: tr, Timeout: time.Minute}}
}

// Close releases idle connections (and stops renewing the client's
// certificate).
func (c *Client) Close() {
	c.http.CloseIdleConnections()
	if c.closer != nil {
		c.closer()
	}
}

// Error is a refusal from the server.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("server refused (HTTP %d): %s", e.Code, e.Msg) }

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(b, &e)
		return &Error{Code: resp.StatusCode, Msg: e.Error}
	}
	return json.Unmarshal(b, out)
}

// Ready asks /v2/health/ready.
func (c *Client) Ready(ctx context.Context) (bool, error) {
	var r struct{ Ready bool }
	err := c.do(ctx, "GET", "/v2/health/ready", nil, &r)
	return r.Ready, err
}

// Infer sends rows (each of the model's input width) and returns the
// model's outputs per row.
func (c *Client) Infer(ctx context.Context, model string, rows [][]float32) ([][]float32, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("no rows")
	}
	d := len(rows[0])
	flat := make([]float32, 0, len(rows)*d)
	for i, r := range rows {
		if len(r) != d {
			return nil, fmt.Errorf("row %d has %d values, row 0 has %d", i, len(r), d)
		}
		flat = append(flat, r...)
	}
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{len(rows), d}, "data": flat}}})
	var resp struct {
		Outputs []struct {
			Shape []int     `json:"shape"`
			Data  []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := c.do(ctx, "POST", "/v2/models/"+model+"/infer", body, &resp); err != nil {
		return nil, err
	}
	if len(resp.Outputs) != 1 || len(resp.Outputs[0].Shape) != 2 || resp.Outputs[0].Shape[0] != len(rows) {
		return nil, fmt.Errorf("model %s: unexpected response shape", model)
	}
	k := resp.Outputs[0].Shape[1]
	if len(resp.Outputs[0].Data) != len(rows)*k {
		return nil, fmt.Errorf("model %s: %d output values for %d×%d", model, len(resp.Outputs[0].Data), len(rows), k)
	}
	out := make([][]float32, len(rows))
	for i := range out {
		out[i] = resp.Outputs[0].Data[i*k : (i+1)*k]
	}
	return out, nil
}
