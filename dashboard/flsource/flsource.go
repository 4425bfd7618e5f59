// Package flsource feeds the dashboard from a horizontal-FL workspace's
// files, read-only: the federation bundle and pinned root (members, roles,
// identity expiry, revocations; client-certificate checks against the
// federation CA and CRL) and the aggregator's metrics files
// (runs/*/metrics.jsonl: rounds, phase times, rejections, resumes and the
// RA-TLS handshake verdicts per peer). It imports fl/metrics (the file
// format) and pki, never an FL runtime, so the aggregator's --ui-addr and
// `teeml dashboard` use the same reader.
package flsource

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/teeml/teeml/dashboard"
	"github.com/teeml/teeml/dashboard/pkisource"
	"github.com/teeml/teeml/fl/metrics"
	"github.com/teeml/teeml/pki"
)

// A workspace's federation files (package party's layout: party.RootFile
// and party.BundleFile; a test checks they agree).
const (
	RootFile   = "pki/root.pem"
	BundleFile = "pki/federation.bundle"
	// RunsGlob finds the aggregator's metrics files (fl/run.RunDir).
	RunsGlob = "runs/*/" + metrics.FileName
)

// Source reads one workspace. Its Federation and VerifyClient are
// pkisource's over the workspace's (or the given) root and bundle.
type Source struct {
	// Workspace is the workspace directory.
	Workspace string
	// Metrics, if set, are the metrics files to read instead of RunsGlob's.
	Metrics []string
	// Root and Bundle, if set, are the pinned root and federation bundle
	// files instead of the workspace's RootFile and BundleFile.
	Root, Bundle string
}

func (s *Source) pki() *pkisource.Source {
	return &pkisource.Source{Root: s.rootPath(), Bundle: s.bundlePath()}
}

// Federation implements dashboard.FederationSource.
func (s *Source) Federation(ctx context.Context) (*dashboard.Federation, error) {
	return s.pki().Federation(ctx)
}

// VerifyClient checks a browser's client certificate (pkisource.Source.VerifyClient).
func (s *Source) VerifyClient(chain []*x509.Certificate, now time.Time) (string, error) {
	return s.pki().VerifyClient(chain, now)
}

func (s *Source) rootPath() string {
	if s.Root != "" {
		return s.Root
	}
	return filepath.Join(s.Workspace, filepath.FromSlash(RootFile))
}

func (s *Source) bundlePath() string {
	if s.Bundle != "" {
		return s.Bundle
	}
	return filepath.Join(s.Workspace, filepath.FromSlash(BundleFile))
}

// New returns a Source over workspace ws.
func New(ws string) *Source { return &Source{Workspace: ws} }

var (
	_ dashboard.FederationSource  = (*Source)(nil)
	_ dashboard.AttestationSource = (*Source)(nil)
	_ dashboard.FLSource          = (*Source)(nil)
)

func (s *Source) metricsFiles() ([]string, error) {
	if len(s.Metrics) > 0 || s.Workspace == "" {
		return s.Metrics, nil
	}
	files, err := filepath.Glob(filepath.Join(s.Workspace, filepath.FromSlash(RunsGlob)))
	if err != nil {
		return nil, fmt.Errorf("flsource: %w", err)
	}
	sort.Strings(files)
	return files, nil
}

// WatchedFiles are the files whose change the dashboard shows live: the
// federation bundle and every metrics file (found again on each call).
func (s *Source) WatchedFiles() []string {
	files, _ := s.metricsFiles()
	return append([]string{s.bundlePath()}, files...)
}

// FLRuns implements dashboard.FLSource: one run per metrics file.
func (s *Source) FLRuns(ctx context.Context) ([]dashboard.FLRun, error) {
	files, err := s.metricsFiles()
	if err != nil {
		return nil, err
	}
	var runs []dashboard.FLRun
	var errs []error
	for _, p := range files {
		if err := ctx.Err(); err != nil {
			return runs, err
		}
		recs, warnings, err := metrics.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		runs = append(runs, Run(filepath.Base(filepath.Dir(p)), recs, warnings))
	}
	return runs, errors.Join(errs...)
}

// Run turns one metrics file's records into a dashboard run. A round's
// metrics are its round record's (val_*, local_val_*, dp_*) and its
// evaluate record's (test_*); its stragglers are the collaborators that
// fetched the round's model but are not among its participants.
func Run(name string, recs []metrics.Record, warnings []string) dashboard.FLRun {
	run := dashboard.FLRun{Name: name, Warnings: warnings}
	eval := map[int]map[string]float64{}
	downloaded := map[int][]string{}
	type pk struct{ p, ph string }
	phases := map[pk]*dashboard.PhaseTime{}
	var order []pk
	for _, r := range recs {
		switch r.Phase {
		case metrics.PhaseRound:
			m := make(map[string]float64, len(r.Metrics))
			for k, v := range r.Metrics {
				m[k] = v
			}
			run.Rounds = append(run.Rounds, dashboard.Round{Round: r.Round, Time: r.Time, Seconds: r.Seconds,
				Participants: r.Participants, Accepted: r.Accepted, Rejected: r.Rejected, Metrics: m})
		case metrics.PhaseEvaluate:
			eval[r.Round] = r.Metrics
		case metrics.PhaseRejected, metrics.PhaseRefused:
			run.Rejections = append(run.Rejections, dashboard.Rejection{Round: r.Round, Time: r.Time, Participant: r.Participant,
				Kind: r.Phase, Reason: r.Reason, Message: r.Message})
		case metrics.PhaseResume:
			run.Events = append(run.Events, dashboard.RunEvent{Round: r.Round, Time: r.Time, Kind: "resume",
				Reason: fmt.Sprintf("resumed after round %d", r.Round)})
		case metrics.PhaseStopped:
			run.Events = append(run.Events, dashboard.RunEvent{Round: r.Round, Time: r.Time, Kind: "stopped",
				Reason: strings.TrimSpace(r.Reason + ": " + r.Message)})
		}
		if r.Phase == metrics.PhaseDownload && !slices.Contains(downloaded[r.Round], r.Participant) {
			downloaded[r.Round] = append(downloaded[r.Round], r.Participant)
		}
		switch r.Phase {
		case metrics.PhaseDownload, metrics.PhaseTrain, metrics.PhaseUpload, metrics.PhaseValidate, metrics.PhaseAggregate, metrics.PhaseEvaluate:
			k := pk{r.Participant, r.Phase}
			p, ok := phases[k]
			if !ok {
				p = &dashboard.PhaseTime{Participant: r.Participant, Phase: r.Phase}
				phases[k] = p
				order = append(order, k)
			}
			p.Count++
			p.Seconds += r.Seconds
			p.Max = max(p.Max, r.Seconds)
		}
	}
	for i := range run.Rounds {
		rd := &run.Rounds[i]
		for k, v := range eval[rd.Round] {
			if _, ok := rd.Metrics[k]; !ok {
				rd.Metrics[k] = v
			}
		}
		for _, c := range downloaded[rd.Round] {
			if !slices.Contains(rd.Participants, c) {
				rd.Stragglers = append(rd.Stragglers, c)
			}
		}
		sort.Strings(rd.Stragglers)
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].p != order[j].p {
			return order[i].p < order[j].p
		}
		return phaseRank(order[i].ph) < phaseRank(order[j].ph)
	})
	for _, k := range order {
		run.Phases = append(run.Phases, *phases[k])
	}
	return run
}

func phaseRank(p string) int {
	return slices.Index([]string{metrics.PhaseDownload, metrics.PhaseTrain, metrics.PhaseUpload, metrics.PhaseValidate,
		metrics.PhaseAggregate, metrics.PhaseEvaluate}, p)
}

// Attestations implements dashboard.AttestationSource: one row per active
// member (the evidence the CA certified) with the handshake verdicts the
// aggregator recorded for it, and one per unknown peer that was refused.
func (s *Source) Attestations(ctx context.Context) ([]dashboard.Attestation, error) {
	var out []dashboard.Attestation
	idx := map[string]int{}
	var errs []error
	if f, _, err := s.pki().Load(); err != nil {
		errs = append(errs, err)
	} else {
		for _, m := range f.Members() {
			if m.Status != pki.Active {
				continue
			}
			idx[m.Name] = len(out)
			out = append(out, dashboard.Attestation{Peer: m.Name, Role: m.Role, Platform: m.Evidence.TEE,
				Measurement: m.Evidence.Measurement, TCBStatus: m.Evidence.TCBStatus, Debug: m.Evidence.Debug,
				Simulated: m.Evidence.Simulated})
		}
	}
	files, err := s.metricsFiles()
	if err != nil {
		return out, err
	}
	for _, p := range files {
		recs, _, err := metrics.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range recs {
			if r.Phase != metrics.PhaseAttestation {
				continue
			}
			i, ok := idx[r.Participant]
			if !ok {
				idx[r.Participant] = len(out)
				i = len(out)
				out = append(out, dashboard.Attestation{Peer: r.Participant, Role: r.Role, Platform: "unknown"})
			}
			a := &out[i]
			if r.Result == "accepted" {
				a.Accepted++
			} else {
				a.Refused++
			}
			if !r.Time.Before(a.LastVerified) {
				a.LastVerified, a.LastResult, a.LastReason = r.Time, r.Result, r.Reason
			}
		}
	}
	return out, errors.Join(errs...)
}
