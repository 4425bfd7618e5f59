package dashboard

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// PromSource is a ServiceSource over a running request/response service's
// own Prometheus registry: one row per model of its requests counter, and
// one row "all" with the refusals counter's total (refusals before a model
// was chosen, such as unauthenticated calls, count only there).
type PromSource struct {
	Service  string // e.g. "inference"
	Gatherer prometheus.Gatherer
	// Since is when the counters started (the service's start).
	Since time.Time
	// Requests is a counter with labels "model" and "outcome" (OKOutcome
	// for a served request, ErrorOutcome for an internal error, anything
	// else a refusal); Latency a histogram with label "model" of served
	// requests; Refusals a counter of every refusal.
	Requests, Latency, Refusals string
	OKOutcome, ErrorOutcome     string
}

var _ ServiceSource = (*PromSource)(nil)

// Total is the sum of the requests counter (what a live page watches).
func (p *PromSource) Total() (float64, error) {
	fams, err := p.Gatherer.Gather()
	if err != nil {
		return 0, fmt.Errorf("dashboard: %s metrics: %w", p.Service, err)
	}
	t := 0.0
	for _, f := range fams {
		if f.GetName() == p.Requests {
			for _, m := range f.GetMetric() {
				t += m.GetCounter().GetValue()
			}
		}
	}
	return t, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Services implements ServiceSource.
func (p *PromSource) Services(context.Context) ([]ServiceStats, error) {
	fams, err := p.Gatherer.Gather()
	if err != nil {
		return nil, fmt.Errorf("dashboard: %s metrics: %w", p.Service, err)
	}
	rows := map[string]*ServiceStats{}
	row := func(model string) *ServiceStats {
		r, ok := rows[model]
		if !ok {
			r = &ServiceStats{Service: p.Service, Endpoint: model, Since: p.Since}
			rows[model] = r
		}
		return r
	}
	all := &ServiceStats{Service: p.Service, Endpoint: "all", Since: p.Since}
	lat := map[string][2]float64{} // model → sum, count
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case p.Requests:
				v := int64(m.GetCounter().GetValue())
				r := row(label(m, "model"))
				r.Requests += v
				all.Requests += v
				switch label(m, "outcome") {
				case p.OKOutcome:
				case p.ErrorOutcome:
					r.Errors += v
					all.Errors += v
				default:
					r.Refused += v
				}
			case p.Latency:
				h := m.GetHistogram()
				model := label(m, "model")
				l := lat[model]
				lat[model] = [2]float64{l[0] + h.GetSampleSum(), l[1] + float64(h.GetSampleCount())}
			case p.Refusals:
				all.Refused += int64(m.GetCounter().GetValue())
			}
		}
	}
	var sum, n float64
	for model, l := range lat {
		if l[1] > 0 {
			row(model).LatencySeconds = l[0] / l[1]
		}
		sum, n = sum+l[0], n+l[1]
	}
	if n > 0 {
		all.LatencySeconds = sum / n
	}
	out := make([]ServiceStats, 0, len(rows)+1)
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Endpoint < out[j].Endpoint })
	return append(out, *all), nil
}

// WatchValue calls value every interval until ctx ends and notify when it
// changed (e.g. a service's request total).
func WatchValue(ctx context.Context, interval time.Duration, value func() string, notify func()) {
	last := value()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if v := value(); v != last {
			last = v
			notify()
		}
	}
}
