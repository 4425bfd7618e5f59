package serve

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/teeml/teeml/ratls"
	"github.com/teeml/teeml/serve/oip"
)

var httpCodes = map[Status]int{
	StatusOK: http.StatusOK, StatusBadRequest: http.StatusBadRequest, StatusUnauthenticated: http.StatusUnauthorized,
	StatusForbidden: http.StatusForbidden, StatusNotFound: http.StatusNotFound, StatusBusy: http.StatusTooManyRequests,
	StatusUnavailable: http.StatusServiceUnavailable, StatusTimeout: http.StatusGatewayTimeout, StatusInternal: http.StatusInternalServerError,
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

func writeErr(w http.ResponseWriter, err error) {
	st := StatusOf(err)
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if st == StatusInternal {
		msg = "internal error" // details in the server log, not to the caller
	}
	writeJSON(w, httpCodes[st], map[string]string{"error": msg})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// Handler serves the Open Inference Protocol's REST API:
//
//	GET  /v2/health/live, /v2/health/ready, /v2
//	GET  /v2/models/{name}[/versions/{version}], …/ready
//	POST /v2/models/{name}[/versions/{version}]/infer
//
// Health and metadata need no token; infer does.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	})
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		if !s.Ready() {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]bool{"ready": s.Ready()})
	})
	mux.HandleFunc("GET /v2", func(w http.ResponseWriter, r *http.Request) {
		name, ver, ext := ServerMeta()
		writeJSON(w, http.StatusOK, map[string]any{"name": name, "version": ver, "extensions": ext})
	})
	meta := func(w http.ResponseWriter, r *http.Request) {
		mm, err := s.Metadata(r.PathValue("name"), r.PathValue("version"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, mm)
	}
	ready := func(w http.ResponseWriter, r *http.Request) {
		ok := s.ModelReady(r.PathValue("name"), r.PathValue("version"))
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
			if _, err := s.find(r.PathValue("name"), r.PathValue("version")); err != nil {
				code = http.StatusNotFound
			}
		}
		writeJSON(w, code, map[string]any{"name": r.PathValue("name"), "ready": ok})
	}
	mux.HandleFunc("GET /v2/models/{name}", meta)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}", meta)
	mux.HandleFunc("GET /v2/models/{name}/ready", ready)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", ready)
	mux.HandleFunc("POST /v2/models/{name}/infer", s.restInfer)
	mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", s.restInfer)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, refuse(StatusNotFound, "no such endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Server) restInfer(w http.ResponseWriter, r *http.Request) {
	caller, err := s.Caller(ratls.HTTPPeer(r), bearer(r))
	if err != nil {
		writeErr(w, err)
		return
	}
	// Counted in flight while its body is read and decoded: a batch
	// forming meanwhile waits for it (serve/batch).
	v, findErr := s.find(r.PathValue("name"), r.PathValue("version"))
	if findErr == nil {
		ctx, leave := v.b.Arrive(r.Context())
		defer leave()
		r = r.WithContext(ctx)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeErr(w, refuse(StatusBadRequest, "request body larger than %d bytes", s.o.MaxBody))
			return
		}
		writeErr(w, refuse(StatusBadRequest, "reading the request body: %v", err))
		return
	}
	hl := -1
	if h := r.Header.Get(oip.HeaderLength); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 {
			writeErr(w, refuse(StatusBadRequest, "%s %q: want a byte count", oip.HeaderLength, h))
			return
		}
		hl = n
	}
	req, err := oip.DecodeJSON(body, hl, s.o.Limits)
	if err != nil {
		s.m.requests.WithLabelValues(r.PathValue("name"), "rest", statusNames[StatusBadRequest]).Inc()
		writeErr(w, err)
		return
	}
	resp, err := s.infer(r.Context(), "rest", caller, r.PathValue("name"), v, findErr, req)
	if err != nil {
		if StatusOf(err) == StatusInternal {
			s.o.Log.Error("serve: inference failed", "model", r.PathValue("name"), "err", err)
		}
		writeErr(w, err)
		return
	}
	out, hlen, err := oip.EncodeJSON(resp, req)
	if err != nil {
		writeErr(w, err)
		return
	}
	if hlen >= 0 {
		w.Header().Set(oip.HeaderLength, strconv.Itoa(hlen))
		w.Header().Set("Content-Type", "application/octet-stream")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Write(out)
}
