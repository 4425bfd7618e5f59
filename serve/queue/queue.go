// Package queue is teeml serve's queue mode, in the manner of BigDL
// Cluster Serving but on an existing streaming engine: NATS JetStream
// (embedded in-process by default, or an external cluster by URL).
//
// Requests are published to subject teeml.infer.<model> (stream
// TEEML_REQUESTS, file storage, work-queue retention) with header
// Teeml-Request-Id; results go to teeml.result.<model> (stream
// TEEML_RESULTS) with the same id. Delivery is at least once: a request is
// acknowledged only after its result was stored, so a killed server loses
// no acknowledged request; the result is published with the request id as
// JetStream message id, so a request redelivered after a crash between
// publishing and acknowledging is answered once in the result stream (the
// duplicate window covers Duplicates).
package queue

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/teeml/teeml/serve"
	"github.com/teeml/teeml/serve/oip"
)

// Names of the streams, subjects and headers.
const (
	RequestStream  = "TEEML_REQUESTS"
	ResultStream   = "TEEML_RESULTS"
	RequestPrefix  = "teeml.infer."
	ResultPrefix   = "teeml.result."
	HeaderID       = "Teeml-Request-Id"
	HeaderStatus   = "Teeml-Status"
	HeaderAuth     = "Authorization"
	consumerName   = "teeml-serve"
	DefaultWindow  = time.Hour
	maxMessageSize = 8 << 20
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// Embedded is an in-process NATS server with JetStream on loopback.
type Embedded struct {
	ns *server.Server
}

// StartEmbedded starts NATS with JetStream storing in dir, listening on
// listen (host:port; port 0 picks one).
func StartEmbedded(dir, listen string) (*Embedded, error) {
	host, port := "127.0.0.1", -1
	if listen != "" {
		h, p, ok := strings.Cut(listen, ":")
		if !ok {
			return nil, fmt.Errorf("queue: listen %q: want host:port", listen)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("queue: listen %q: %w", listen, err)
		}
		host, port = h, n
		if port == 0 {
			port = -1
		}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("queue: listen %q: the embedded NATS server has neither TLS nor authentication, so it listens on loopback only (run a NATS cluster with TLS for remote clients and give its URL)", listen)
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
		// Every write is fsynced before it is acknowledged: an acknowledged
		// request or result survives the process being killed.
		SyncAlways: true,
		MaxPayload: maxMessageSize})
	if err != nil {
		return nil, fmt.Errorf("queue: NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("queue: embedded NATS did not start within 30 s")
	}
	return &Embedded{ns: ns}, nil
}

// URL is the embedded server's client URL.
func (e *Embedded) URL() string { return e.ns.ClientURL() }

// Close shuts the embedded server down.
func (e *Embedded) Close() { e.ns.Shutdown(); e.ns.WaitForShutdown() }

// Setup creates (or updates) the two streams.
func Setup(ctx context.Context, js jetstream.JetStream, window time.Duration) error {
	if window == 0 {
		window = DefaultWindow
	}
	for _, sc := range []jetstream.StreamConfig{
		{Name: RequestStream, Subjects: []string{RequestPrefix + ">"}, Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy, Duplicates: window},
		{Name: ResultStream, Subjects: []string{ResultPrefix + ">"}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Duplicates: window},
	} {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("queue: stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// Auth is how teeml authenticates to an external NATS cluster and
// verifies it: NATS's own TLS and credentials (the RA-TLS trust of teeml
// serve is between clients and the server; the queue is infrastructure).
type Auth struct {
	// CA is a PEM file of the CAs the NATS servers' certificates must
	// chain to; setting it (or Cert) requires TLS.
	CA string
	// Cert and Key are a PEM client certificate and key (mutual TLS).
	Cert, Key string
	// Creds is a NATS credentials file (user JWT and NKey seed).
	Creds string
}

func (a Auth) options() ([]nats.Option, error) {
	var opts []nats.Option
	if (a.Cert == "") != (a.Key == "") {
		return nil, errors.New("queue: NATS client certificate and key go together (give both or neither)")
	}
	for what, f := range map[string]string{"CA": a.CA, "client certificate": a.Cert, "client key": a.Key, "credentials": a.Creds} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("queue: NATS %s: %w", what, err)
		}
	}
	if a.CA != "" {
		opts = append(opts, nats.RootCAs(a.CA))
	}
	if a.Cert != "" {
		opts = append(opts, nats.ClientCert(a.Cert, a.Key))
	}
	if a.CA != "" || a.Cert != "" {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if a.Creds != "" {
		opts = append(opts, nats.UserCredentials(a.Creds))
	}
	return opts, nil
}

// Connect dials url (with auth for an external cluster) and returns the
// connection and its JetStream context.
func Connect(url string, auth ...Auth) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("teeml"), nats.Timeout(10 * time.Second), nats.MaxReconnects(-1)}
	for _, a := range auth {
		o, err := a.options()
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, o...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("queue: connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("queue: %w", err)
	}
	return nc, js, nil
}

// Options configure Consume.
type Options struct {
	// InFlight bounds requests being inferred at once (default 256).
	InFlight int
	// AckWait is how long a taken request stays unacknowledged before
	// JetStream redelivers it (default 30 s).
	AckWait time.Duration
	Log     *slog.Logger
}

// Consume answers requests from the stream with s until ctx ends, then
// stops taking new ones and finishes those in flight.
func Consume(ctx context.Context, js jetstream.JetStream, s *serve.Server, o Options) error {
	if o.InFlight == 0 {
		o.InFlight = 256
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, RequestStream, jetstream.ConsumerConfig{Durable: consumerName, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: o.AckWait, MaxAckPending: 4 * o.InFlight, MaxDeliver: -1})
	if err != nil {
		return fmt.Errorf("queue: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(o.InFlight))
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	go func() { <-ctx.Done(); it.Drain() }()
	sem := make(chan struct{}, o.InFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("queue: %w", err)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			handle(context.WithoutCancel(ctx), js, s, msg, o.Log)
		}()
	}
}

// handle answers one request: the result (or the refusal) is stored in the
// result stream under the request's id, then the request is acknowledged.
func handle(ctx context.Context, js jetstream.JetStream, s *serve.Server, msg jetstream.Msg, log *slog.Logger) {
	model := strings.TrimPrefix(msg.Subject(), RequestPrefix)
	id := msg.Headers().Get(HeaderID)
	if !idRE.MatchString(id) {
		// No id to answer under: drop it (acknowledged, logged).
		log.Warn("queue: request without a valid Teeml-Request-Id dropped", "subject", msg.Subject())
		msg.Term()
		return
	}
	code, body := answer(ctx, s, model, msg)
	out := nats.NewMsg(ResultPrefix + model)
	out.Header.Set(HeaderID, id)
	out.Header.Set(HeaderStatus, strconv.Itoa(code))
	out.Data = body
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(pctx, out, jetstream.WithMsgID(id)); err != nil {
		log.Warn("queue: storing a result failed; the request will be redelivered", "id", id, "err", err)
		msg.Nak()
		return
	}
	if err := msg.DoubleAck(pctx); err != nil {
		// The result is stored; a redelivery is deduplicated by its id.
		log.Warn("queue: acknowledging a request failed", "id", id, "err", err)
	}
}

var httpCode = map[serve.Status]int{serve.StatusOK: 200, serve.StatusBadRequest: 400, serve.StatusUnauthenticated: 401, serve.StatusForbidden: 403,
	serve.StatusNotFound: 404, serve.StatusBusy: 429, serve.StatusUnavailable: 503, serve.StatusTimeout: 504, serve.StatusInternal: 500}

func answer(ctx context.Context, s *serve.Server, model string, msg jetstream.Msg) (int, []byte) {
	fail := func(err error) (int, []byte) {
		b, _ := json.Marshal(map[string]string{"error": strings.Join(strings.Fields(err.Error()), " ")})
		return httpCode[serve.StatusOf(err)], b
	}
	caller, err := s.Caller(nil, strings.TrimPrefix(msg.Headers().Get(HeaderAuth), "Bearer ")) // queued requests carry tokens only
	if err != nil {
		return fail(err)
	}
	req, err := oip.DecodeJSON(msg.Data(), -1, oip.DefaultLimits)
	if err != nil {
		return fail(err)
	}
	req.ID = msg.Headers().Get(HeaderID)
	resp, err := s.Infer(ctx, "queue", caller, model, "", req)
	if err != nil {
		return fail(err)
	}
	body, _, err := oip.EncodeJSON(resp, nil)
	if err != nil {
		return fail(err)
	}
	return 200, body
}

// ServeOptions configure Serve.
type ServeOptions struct {
	Repository string // serving YAML
	// URL is an external NATS server; empty runs one embedded, storing in
	// StoreDir and listening on Listen (loopback by default).
	URL, StoreDir, Listen string
	// Auth authenticates to, and verifies, the external cluster at URL.
	Auth Auth
	// Workspace and Name, or PartyConfig, are the server's party
	// (serve.StartParty): its simulation notice, and its key broker for
	// sealed models.
	Workspace, Name, PartyConfig string
	Tokens                       map[string]string // hash → name (serve.LoadTokens); nil with Anonymous
	Anonymous                    bool
	Out                          io.Writer
	Log                          *slog.Logger
}

// Serve runs queue mode until ctx ends: the models of the repository answer
// the request stream.
func Serve(ctx context.Context, o ServeOptions) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	url := o.URL
	if url == "" && o.Auth != (Auth{}) {
		return errors.New("queue: NATS TLS and credentials are for an external cluster (--nats URL), not the embedded server")
	}
	_, ks, closeParty, err := serve.StartParty(ctx, o.Workspace, o.Name, o.PartyConfig, o.Out, o.Log)
	if err != nil {
		return err
	}
	defer closeParty()
	if url == "" {
		if o.StoreDir == "" {
			return errors.New("queue: give a NATS URL or a store directory for the embedded server")
		}
		e, err := StartEmbedded(o.StoreDir, o.Listen)
		if err != nil {
			return err
		}
		defer e.Close()
		url = e.URL()
	}
	nc, js, err := Connect(url, o.Auth)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := Setup(ctx, js, 0); err != nil {
		return err
	}
	repo, err := serve.LoadRepository(o.Repository)
	if err != nil {
		return err
	}
	s, err := serve.New(ctx, serve.Options{Repo: repo, Keys: ks, Tokens: o.Tokens, Anonymous: o.Anonymous, Log: o.Log})
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	fmt.Fprintf(o.Out, "serve queue: NATS %s, requests on %s<model> (stream %s), results on %s<model> (stream %s), models %v\n",
		url, RequestPrefix, RequestStream, ResultPrefix, ResultStream, s.Names())
	return Consume(ctx, js, s, Options{Log: o.Log})
}
