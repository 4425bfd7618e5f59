package serve

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/teeml/teeml/internal/buildinfo"
	"github.com/teeml/teeml/ratls"
	"github.com/teeml/teeml/sealed"
	"github.com/teeml/teeml/serve/batch"
	"github.com/teeml/teeml/serve/oip"
)

// Options configure a Server.
type Options struct {
	Repo *Repository
	// Keys unwraps sealed model files (nil: sealed models are refused).
	Keys sealed.KeySource
	// Tokens maps the SHA-256 (hex) of each API token to its name. With no
	// tokens every request is refused unless Anonymous is set.
	Tokens    map[string]string
	Anonymous bool
	// Members, when true, lets clients authenticate by federation identity
	// (mutual RA-TLS: the transport verified the client's certificate): the
	// caller is the member's name. Recheck, when set, is asked before each
	// REST request whether that identity still holds (revocation while
	// connected; gRPC calls are rechecked by the party's interceptors).
	Members bool
	Recheck func(*ratls.Peer) error
	Limits  oip.Limits
	// MaxBody bounds a request body (default 64 MiB).
	MaxBody int64
	// Timeout bounds one inference (default 30 s).
	Timeout    time.Duration
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

type version struct {
	cfg   ModelConfig
	model Model
	b     *batch.Batcher
}

// Server holds the loaded models. Its REST handler and gRPC service share
// one Infer.
type Server struct {
	o      Options
	models map[string][]*version // by name, versions in repository order
	ready  atomic.Bool
	m      metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	rows     *prometheus.HistogramVec
	refusals *prometheus.CounterVec
}

// New loads every model of the repository and starts its batcher.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Limits == (oip.Limits{}) {
		o.Limits = oip.DefaultLimits
	}
	if o.MaxBody == 0 {
		o.MaxBody = 64 << 20
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if len(o.Tokens) == 0 && !o.Anonymous && !o.Members {
		return nil, errors.New("serve: no API tokens and anonymous access not allowed: every request would be refused")
	}
	s := &Server{o: o, models: map[string][]*version{}}
	s.m = metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_serve_requests_total", Help: "Inference requests by model, protocol and outcome."}, []string{"model", "protocol", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "teeml_serve_request_seconds", Help: "Inference latency by model (queue, batch and model time).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"model"}),
		rows: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "teeml_serve_batch_rows", Help: "Rows per model call (dynamic batching).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}, []string{"model"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "teeml_serve_refusals_total", Help: "Refused requests by reason."}, []string{"reason"}),
	}
	var collectors []prometheus.Collector
	collectors = append(collectors, s.m.requests, s.m.latency, s.m.rows, s.m.refusals)
	for i := range o.Repo.Models {
		mc := o.Repo.Models[i]
		m, err := o.Repo.load(ctx, &mc, o.Keys, o.Log)
		if err != nil {
			s.Close(context.Background())
			return nil, err
		}
		name := mc.Name
		b, err := batch.New(batch.Config{InDim: m.InDim(), OutDim: m.OutDim(), MaxBatch: mc.Batching.MaxBatchSize, MaxDelay: mc.Batching.delay,
			MaxQueue: mc.Batching.MaxQueue, Concurrency: mc.Concurrency,
			OnBatch: func(rows, _ int) { s.m.rows.WithLabelValues(name).Observe(float64(rows)) }}, m.Predict)
		if err != nil {
			if c, ok := m.(interface{ Close() }); ok {
				c.Close()
			}
			s.Close(context.Background())
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		v := &version{cfg: mc, model: m, b: b}
		s.models[name] = append(s.models[name], v)
		collectors = append(collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "teeml_serve_queue_depth", Help: "Requests waiting per model version.",
			ConstLabels: prometheus.Labels{"model": name, "version": mc.Version}}, func() float64 { return float64(b.QueueDepth()) }))
		o.Log.Info("serve: model loaded", "model", name, "version", mc.Version, "platform", m.Platform(), "inputs", m.InDim(), "outputs", m.OutDim(),
			"max_batch", mc.Batching.MaxBatchSize, "max_delay", mc.Batching.delay)
	}
	if o.Registerer != nil {
		for _, c := range collectors {
			if err := o.Registerer.Register(c); err != nil {
				s.Close(context.Background())
				return nil, fmt.Errorf("serve: metrics: %w", err)
			}
		}
	}
	s.ready.Store(true)
	return s, nil
}

// Ready reports whether every model is loaded and the server not draining.
func (s *Server) Ready() bool { return s.ready.Load() }

// Close stops taking requests and answers the queued ones (graceful drain).
func (s *Server) Close(ctx context.Context) error {
	s.ready.Store(false)
	var errs []error
	for _, vs := range s.models {
		for _, v := range vs {
			errs = append(errs, v.b.Close(ctx))
			if c, ok := v.model.(interface{ Close() }); ok {
				c.Close() // external runner processes
			}
		}
	}
	return errors.Join(errs...)
}

// Status is a protocol-independent outcome.
type Status int

// Statuses, mapped to HTTP and gRPC codes by the transports.
const (
	StatusOK Status = iota
	StatusBadRequest
	StatusUnauthenticated
	StatusForbidden
	StatusNotFound
	StatusBusy
	StatusUnavailable
	StatusTimeout
	StatusInternal
)

var statusNames = []string{"ok", "bad_request", "unauthenticated", "forbidden", "not_found", "busy", "unavailable", "timeout", "internal"}

// Error is a refused or failed request.
type Error struct {
	Status Status
	Msg    string
	Err    error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func refuse(st Status, format string, args ...any) *Error {
	return &Error{Status: st, Msg: fmt.Sprintf(format, args...)}
}

// StatusOf classifies err.
func StatusOf(err error) Status {
	var e *Error
	switch {
	case err == nil:
		return StatusOK
	case errors.As(err, &e):
		return e.Status
	case oip.IsBad(err):
		return StatusBadRequest
	case errors.Is(err, batch.ErrQueueFull):
		return StatusBusy
	case errors.Is(err, batch.ErrClosed):
		return StatusUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return StatusTimeout
	case errors.Is(err, context.Canceled):
		return StatusUnavailable
	}
	return StatusInternal
}

// Caller authenticates a request: by the federation identity the transport
// verified (peer, with Members set), else by bearer token; it returns the
// caller's name.
func (s *Server) Caller(peer *ratls.Peer, token string) (string, error) {
	if peer != nil && peer.Identity != nil && s.o.Members {
		if s.o.Recheck != nil {
			if err := s.o.Recheck(peer); err != nil {
				s.m.refusals.WithLabelValues("identity").Inc()
				return "", refuse(StatusForbidden, "federation identity %q no longer accepted: %v", peer.Identity.Name, err)
			}
		}
		return peer.Identity.Name, nil
	}
	if token == "" {
		if s.o.Anonymous {
			return "anonymous", nil
		}
		s.m.refusals.WithLabelValues("unauthenticated").Inc()
		if s.o.Members {
			return "", refuse(StatusUnauthenticated, "no federation certificate and no API token (send Authorization: Bearer <token>)")
		}
		return "", refuse(StatusUnauthenticated, "no API token (send Authorization: Bearer <token>)")
	}
	sum := sha256.Sum256([]byte(token))
	h := hex.EncodeToString(sum[:])
	for k, name := range s.o.Tokens {
		if subtle.ConstantTimeCompare([]byte(k), []byte(h)) == 1 {
			return name, nil
		}
	}
	s.m.refusals.WithLabelValues("unauthenticated").Inc()
	return "", refuse(StatusUnauthenticated, "API token not recognised")
}

// find returns the model version (newest listed when version is "").
func (s *Server) find(name, ver string) (*version, error) {
	vs := s.models[name]
	if len(vs) == 0 {
		return nil, refuse(StatusNotFound, "no model %q (models: %s)", name, strings.Join(s.Names(), ", "))
	}
	if ver == "" {
		return vs[len(vs)-1], nil
	}
	for _, v := range vs {
		if v.cfg.Version == ver {
			return v, nil
		}
	}
	return nil, refuse(StatusNotFound, "model %q has no version %q", name, ver)
}

// Names are the served models, sorted.
func (s *Server) Names() []string {
	out := make([]string, 0, len(s.models))
	for n := range s.models {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ModelReady reports whether a model version is loaded.
func (s *Server) ModelReady(name, ver string) bool {
	_, err := s.find(name, ver)
	return err == nil && s.Ready()
}

// TensorMeta describes a tensor.
type TensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// ModelMeta is a model's metadata (the protocol's model metadata response).
type ModelMeta struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions"`
	Platform string       `json:"platform"`
	Inputs   []TensorMeta `json:"inputs"`
	Outputs  []TensorMeta `json:"outputs"`
}

// Input and output tensor names.
const (
	InputName  = "input"
	OutputName = "output"
)

// Metadata describes a model version.
func (s *Server) Metadata(name, ver string) (*ModelMeta, error) {
	v, err := s.find(name, ver)
	if err != nil {
		return nil, err
	}
	mm := &ModelMeta{Name: name, Platform: v.model.Platform(),
		Inputs:  []TensorMeta{{Name: InputName, Datatype: "FP32", Shape: []int64{-1, int64(v.model.InDim())}}},
		Outputs: []TensorMeta{{Name: OutputName, Datatype: "FP32", Shape: []int64{-1, int64(v.model.OutDim())}}}}
	for _, x := range s.models[name] {
		mm.Versions = append(mm.Versions, x.cfg.Version)
	}
	return mm, nil
}

// ServerMeta is the server metadata.
func ServerMeta() (name, ver string, extensions []string) {
	return "teeml", buildinfo.Version, []string{"binary_tensor_data", "teeml_ratls"}
}

// Infer runs one request for caller on a model version.
func (s *Server) Infer(ctx context.Context, protocol, caller, name, ver string, req *oip.Request) (resp *oip.Response, err error) {
	v, findErr := s.find(name, ver)
	return s.infer(ctx, protocol, caller, name, v, findErr, req)
}

// infer is Infer on the version a caller already looked up (v, or the
// lookup's error findErr), so that a request finds its model once.
func (s *Server) infer(ctx context.Context, protocol, caller, name string, v *version, findErr error, req *oip.Request) (resp *oip.Response, err error) {
	start := time.Now()
	defer func() {
		st := StatusOf(err)
		s.m.requests.WithLabelValues(name, protocol, statusNames[st]).Inc()
		if st == StatusOK {
			s.m.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		} else {
			s.m.refusals.WithLabelValues(statusNames[st]).Inc()
		}
	}()
	if !s.Ready() {
		return nil, refuse(StatusUnavailable, "server is shutting down")
	}
	if findErr != nil {
		return nil, findErr
	}
	if len(v.cfg.Access) > 0 && !slices.Contains(v.cfg.Access, caller) {
		return nil, refuse(StatusForbidden, "caller %q may not use model %s (access: %s)", caller, name, strings.Join(v.cfg.Access, ", "))
	}
	in, err := req.Input("")
	if err != nil {
		in, err = req.Input(InputName)
		if err != nil {
			return nil, refuse(StatusBadRequest, "model %s takes one input tensor %q", name, InputName)
		}
	}
	d := v.model.InDim()
	rows := 0
	switch {
	case len(in.Shape) == 2 && in.Shape[1] == int64(d):
		rows = int(in.Shape[0])
	case len(in.Shape) == 1 && in.Shape[0] == int64(d):
		rows = 1
	default:
		return nil, refuse(StatusBadRequest, "input %s: shape %v, model %s wants [rows, %d]", in.Name, in.Shape, name, d)
	}
	if in.Datatype == "BYTES" {
		return nil, refuse(StatusBadRequest, "input %s: datatype BYTES, model %s takes numbers (FP32)", in.Name, name)
	}
	if rows == 0 {
		return nil, refuse(StatusBadRequest, "input %s: no rows", in.Name)
	}
	for _, o := range req.Outputs {
		if o != OutputName {
			return nil, refuse(StatusBadRequest, "model %s has no output %q (outputs: %s)", name, o, OutputName)
		}
	}
	x := make([]float32, len(in.Values))
	for i, f := range in.Values {
		x[i] = float32(f)
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	y, err := v.b.Do(ctx, x, rows)
	if err != nil {
		return nil, err
	}
	out := oip.Tensor{Name: OutputName, Datatype: "FP32", Shape: []int64{int64(rows), int64(v.model.OutDim())}, Values: make([]float64, len(y))}
	for i, f := range y {
		out.Values[i] = float64(f)
	}
	return &oip.Response{ModelName: name, ModelVersion: v.cfg.Version, ID: req.ID, Outputs: []oip.Tensor{out}}, nil
}
