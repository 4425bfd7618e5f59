package ratls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPServer is RA-TLS for a net/http server: the server presents its
// RA-TLS certificate and, in mode VerifyClientIfPresented, asks clients for
// theirs. A client certificate that is presented is verified in the
// handshake (a failure ends it with the refusal logged); a client that
// presents none is served unverified and authenticates otherwise (an API
// token). Handlers read the verified client with HTTPPeer. Set the
// http.Server's TLSConfig to TLSConfig() and its ConnContext to
// ConnContext.
type HTTPServer struct {
	cfg TransportConfig
	tc  *tls.Config
}

// NewHTTPServer checks cfg: Certificates always; a Verifier for
// VerifyClientIfPresented and VerifyTwoWay (client certificate required);
// VerifyServer asks for no client certificate.
func NewHTTPServer(cfg TransportConfig) (*HTTPServer, error) {
	if cfg.Certificates == nil {
		return nil, errors.New("ratls: HTTP server: no Certificates")
	}
	if cfg.Mode == VerifyClient {
		return nil, fmt.Errorf("ratls: HTTP server: verify mode %s is not offered over HTTP", cfg.Mode)
	}
	if cfg.Mode != VerifyServer && cfg.Verifier == nil {
		return nil, fmt.Errorf("ratls: HTTP server: verify mode %s needs a Verifier", cfg.Mode)
	}
	if cfg.Mode < VerifyTwoWay || cfg.Mode > VerifyClientIfPresented {
		return nil, fmt.Errorf("ratls: HTTP server: unknown verify mode %d", int(cfg.Mode))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &HTTPServer{cfg: cfg}
	h.tc = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: cfg.Certificates.GetCertificate,
		NextProtos:     []string{"http/1.1"},
		// Resumption would skip the client's certificate on later
		// connections: every connection shows and verifies one.
		SessionTicketsDisabled: true,
	}
	if cfg.Mode != VerifyServer {
		h.tc.GetConfigForClient = h.configFor
	}
	return h, nil
}

// TLSConfig is the http.Server's TLS configuration.
func (h *HTTPServer) TLSConfig() *tls.Config { return h.tc }

type httpSlotKey struct{}

// httpSlot holds a connection's verified client, written in its handshake
// and read by its requests.
type httpSlot struct {
	mu   sync.Mutex
	peer *Peer
}

// ConnContext is the http.Server's ConnContext: it gives each connection
// the slot its handshake stores the verified client in.
func (h *HTTPServer) ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, httpSlotKey{}, &httpSlot{})
}

func (h *HTTPServer) configFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	slot, _ := hello.Context().Value(httpSlotKey{}).(*httpSlot)
	if slot == nil {
		return nil, errors.New("ratls: HTTP server: ConnContext is not set on the http.Server")
	}
	remote := ""
	if hello.Conn != nil {
		remote = hello.Conn.RemoteAddr().String()
	}
	c := h.tc.Clone()
	c.GetConfigForClient = nil
	// The RA-TLS verifier checks the client's chain (identity, evidence,
	// policy), not X.509 path validation; crypto/tls still checks
	// possession of the leaf's key.
	c.ClientAuth = tls.RequestClientCert
	if h.cfg.Mode == VerifyTwoWay {
		c.ClientAuth = tls.RequireAnyClientCert
	}
	ctx := hello.Context()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // unverified: authenticated otherwise
		}
		now := time.Now()
		if h.cfg.Now != nil {
			now = h.cfg.Now()
		}
		p, err := h.cfg.Verifier.VerifyPeer(ctx, cs.PeerCertificates, now)
		if err != nil {
			h.cfg.Logger.Warn("ratls: HTTP server refused connection: "+err.Error(), "side", "server", "remote", remote)
			return err
		}
		slot.mu.Lock()
		slot.peer = p
		slot.mu.Unlock()
		return nil
	}
	return c, nil
}

// HTTPPeer is the verified RA-TLS client of r's connection (served by an
// HTTPServer), or nil when the client presented no certificate.
func HTTPPeer(r *http.Request) *Peer {
	slot, _ := r.Context().Value(httpSlotKey{}).(*httpSlot)
	if slot == nil {
		return nil
	}
	slot.mu.Lock()
	defer slot.mu.Unlock()
	return slot.peer
}
