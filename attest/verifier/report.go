package verifier

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/policy"
)

// Report is the outcome of verifying one piece of evidence and, when a
// policy is given, judging it: what `teeml attest verify` prints.
type Report struct {
	Evidence string           `json:"evidence"`
	Format   string           `json:"format"`
	At       time.Time        `json:"verified_at"`
	Claims   *attest.Claims   `json:"-"`
	Fields   []attest.Field   `json:"claims"`
	Policy   *policy.Decision `json:"policy,omitempty"`
	// Accepted is true when verification passed and the policy (if any)
	// accepted the claims.
	Accepted bool   `json:"accepted"`
	Summary  string `json:"summary"`
}

// Judge describes the policy to apply; a nil Policy applies none.
type Judge struct {
	Policy *policy.Policy
	Role   string
	Opts   []policy.Option
}

// VerifyAndJudge verifies ev at now and evaluates the policy.
func (v *Verifier) VerifyAndJudge(ctx context.Context, name string, ev *attest.Evidence, now time.Time, j Judge) (*Report, error) {
	k, err := Detect(ev.Quote)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c, err := v.Verify(ctx, ev, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r := &Report{Evidence: name, Format: k.Format, At: now.UTC(), Claims: c, Fields: c.Fields()}
	if j.Policy == nil {
		r.Accepted = true
		r.Summary = "cryptographically valid; no policy applied"
		if c.Simulated {
			r.Summary += " (SIMULATED evidence: no hardware protection)"
		}
		return r, nil
	}
	role := j.Role
	if role == "" {
		if role, err = onlyRole(j.Policy); err != nil {
			return nil, err
		}
	}
	d := j.Policy.Evaluate(role, c, append([]policy.Option{policy.At(now)}, j.Opts...)...)
	r.Policy = &d
	r.Accepted = d.Accepted
	r.Summary = d.String()
	return r, nil
}

func onlyRole(p *policy.Policy) (string, error) {
	names := make([]string, 0, len(p.Roles))
	for n := range p.Roles {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 1 {
		return names[0], nil
	}
	return "", fmt.Errorf("policy has roles %s: choose one with --role", strings.Join(names, ", "))
}

// WriteText prints the report as aligned "name: value" lines.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if r.Claims.Simulated {
		b.WriteString("WARNING: SIMULATED evidence: no hardware protection\n")
	}
	fmt.Fprintf(&b, "evidence: %s (%s)\n", r.Evidence, r.Format)
	fmt.Fprintf(&b, "verified at: %s\n", r.At.Format(time.RFC3339))
	for _, f := range r.Fields {
		fmt.Fprintf(&b, "%s: %s\n", f.Name, f.Value)
	}
	if r.Policy != nil {
		for _, wn := range r.Policy.Warnings {
			fmt.Fprintf(&b, "policy warning: %s\n", wn)
		}
	}
	verdict := "ACCEPTED"
	if !r.Accepted {
		verdict = "REFUSED"
	}
	fmt.Fprintf(&b, "result: %s: %s\n", verdict, r.Summary)
	_, err := io.WriteString(w, b.String())
	return err
}
