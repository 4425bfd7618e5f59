package client

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/party"
)

// Trust is how a client verifies servers: its party configuration (which
// evidence verifier and simulation keys it trusts) and the attestation
// policy the server must satisfy for Role (default "serving"). With
// Workspace and Name instead of PartyConfig, the client is that federation
// member and presents its identity to servers that ask (mutual RA-TLS; no
// token needed).
type Trust struct {
	PartyConfig, Policy, Role string
	Workspace, Name           string
	Log                       *slog.Logger
}

func (t Trust) load() (*party.Party, party.Peer, error) {
	if t.Role == "" {
		t.Role = "serving"
	}
	if t.Log == nil {
		t.Log = slog.Default()
	}
	member := t.Workspace != "" && t.Name != ""
	if (t.PartyConfig == "" && !member) || t.Policy == "" {
		return nil, party.Peer{}, fmt.Errorf("give the client's party configuration (or its workspace and member name) and the server policy")
	}
	var p *party.Party
	var err error
	if member {
		p, err = party.Load(party.WorkspaceFiles(t.Workspace, t.Name), t.Name, "", t.Log)
	} else {
		p, err = party.LoadAttested(party.ConfigFiles(t.PartyConfig), "client", t.Log)
	}
	if err != nil {
		return nil, party.Peer{}, err
	}
	pol, err := policy.Load(t.Policy)
	if err != nil {
		return nil, party.Peer{}, err
	}
	return p, party.Peer{Role: t.Role, Policy: pol}, nil
}

// Dial returns a client of url that verifies the server by t before any
// request.
func Dial(url, token string, t Trust) (*Client, error) {
	p, peer, err := t.load()
	if err != nil {
		return nil, err
	}
	if p.PKI() {
		tc, stop, err := p.ClientTLSWithIdentity(context.Background(), peer, t.Log)
		if err != nil {
			return nil, err
		}
		c := New(url, tc, token)
		c.closer = stop
		return c, nil
	}
	tc, _, err := p.ClientTLS(peer, t.Log)
	if err != nil {
		return nil, err
	}
	return New(url, tc, token), nil
}

// Verdict is a verified server.
type Verdict struct {
	TEE         string
	Measurement string
	Simulated   bool
	Debug       bool
	TCBStatus   string
	// Pin is the server key's pin for curl --pinnedpubkey.
	Pin string
}

// VerifyServer checks the RA-TLS evidence of the server at addr
// (host:port, or an https:// URL) against t.
func VerifyServer(ctx context.Context, addr string, t Trust) (*Verdict, error) {
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "https://"), "/")
	p, peer, err := t.load()
	if err != nil {
		return nil, err
	}
	vp, pin, err := p.VerifyServer(ctx, addr, peer, t.Log)
	if err != nil {
		return nil, err
	}
	c := vp.Claims
	v := &Verdict{TEE: string(c.TEE), Simulated: c.Simulated, Debug: c.Debug, TCBStatus: string(c.TCBStatus), Pin: pin}
	switch c.TEE {
	case attest.SGX:
		v.Measurement = "mr_enclave " + attest.Hex(c.MREnclave)
	case attest.TDX:
		v.Measurement = "mr_td " + attest.Hex(c.MRTD)
	case attest.SNP:
		v.Measurement = "measurement " + attest.Hex(c.Measurement)
	}
	return v, nil
}
