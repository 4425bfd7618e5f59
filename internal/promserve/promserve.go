// Package promserve is the one HTTP server every teeml service exposes
// its Prometheus metrics and health on:
//
//	/metrics   the service's registry (Prometheus text format)
//	/healthz   200 while the process serves (liveness)
//	/readyz    200 when the service's Ready check passes, 503 with its reason otherwise
//
// Every timeout is set (a slow client cannot hold a connection), the
// server stops when its context ends, and the error that stopped it early
// is returned by Close, never dropped.
package promserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures Serve.
type Options struct {
	// Gatherer is the registry served at /metrics (required).
	Gatherer prometheus.Gatherer
	// Ready, when set, decides /readyz: nil means ready.
	Ready func() error
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Service names the service in the log line.
	Service string
}

// Server is a running metrics and health endpoint.
type Server struct {
	srv     *http.Server
	addr    string
	served  chan struct{} // closed when Serve returned
	err     error         // Serve's error, set before served is closed
	closing sync.Once
}

// Serve listens on addr and serves until Close or ctx ends.
func Serve(ctx context.Context, addr string, o Options) (*Server, error) {
	if o.Gatherer == nil {
		return nil, errors.New("metrics: no registry to serve")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{Timeout: 10 * time.Second}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready != nil {
			if err := o.Ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
			BaseContext: func(net.Listener) context.Context { return ctx }},
		addr:   lis.Addr().String(),
		served: make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("metrics: serve %s: %w", s.addr, err)
			log.Error("metrics server stopped", "addr", s.addr, "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.shutdown()
		case <-s.served:
		}
	}()
	log.Info("Prometheus metrics listening", "service", o.Service, "url", "http://"+s.addr+"/metrics", "health", "http://"+s.addr+"/healthz")
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

func (s *Server) shutdown() {
	s.closing.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
	})
}

// Close stops the server (waiting at most 5 s for requests in flight) and
// returns the error that stopped it early, if any. It may be called more
// than once.
func (s *Server) Close() error {
	s.shutdown()
	<-s.served
	return s.err
}
