package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Parameter types.
const (
	TypeInteger = "integer"
	TypeDouble  = "double"
	TypeString  = "string"
	TypeDate    = "date"
	TypeBoolean = "boolean"
)

// DefaultMaxLen bounds a string parameter without max_len.
const DefaultMaxLen = 256

// Param is a typed template parameter.
type Param struct {
	Name     string
	Type     string
	Min, Max *float64 // integer and double only
	Enum     []string // string only: the allowed values
	MaxLen   int      // string only
}

func (p *parser) param(key, name string, d paramDoc) (Param, error) {
	if !identRE.MatchString(name) {
		return Param{}, p.errf(key, "parameter name must be a lower-case identifier")
	}
	pr := Param{Name: name, Type: d.Type, Min: d.Min, Max: d.Max, Enum: d.Enum, MaxLen: d.MaxLen}
	switch d.Type {
	case TypeInteger, TypeDouble:
		if len(d.Enum) > 0 || d.MaxLen != 0 {
			return Param{}, p.errf(key, "enum and max_len apply to strings only")
		}
		for _, b := range []*float64{d.Min, d.Max} {
			if b != nil && !finite(*b) {
				return Param{}, p.errf(key, "min and max must be finite")
			}
		}
		if d.Min != nil && d.Max != nil && *d.Min > *d.Max {
			return Param{}, p.errf(key, "min %v > max %v", *d.Min, *d.Max)
		}
	case TypeString:
		if d.Min != nil || d.Max != nil {
			return Param{}, p.errf(key, "min and max apply to numbers only (strings take enum or max_len)")
		}
		if d.MaxLen < 0 || d.MaxLen > 4096 {
			return Param{}, p.errf(key+".max_len", "want 1..4096, got %d", d.MaxLen)
		}
		if pr.MaxLen == 0 {
			pr.MaxLen = DefaultMaxLen
		}
	case TypeDate, TypeBoolean:
		if d.Min != nil || d.Max != nil || len(d.Enum) > 0 || d.MaxLen != 0 {
			return Param{}, p.errf(key, "a %s parameter takes no min, max, enum or max_len", d.Type)
		}
	case "":
		return Param{}, p.errf(key+".type", "missing (integer, double, string, date or boolean)")
	default:
		return Param{}, p.errf(key+".type", "%q: want integer, double, string, date or boolean", d.Type)
	}
	return pr, nil
}

// Bound is a template with every parameter given a checked, typed value.
type Bound struct {
	Template *Template
	// Args are the typed values, by parameter name: int64, float64,
	// string, time.Time (dates) or bool. The engine binds them as named
	// parameters of a prepared statement.
	Args map[string]any
	// Text are the values as given, by name (what the audit records).
	Text map[string]string
}

// Canonical is the bound query's canonical form: the template name and the
// parameters as JSON with sorted keys, the same bytes wherever computed.
func (b *Bound) Canonical() []byte {
	names := make([]string, 0, len(b.Text))
	for n := range b.Text {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	tn, _ := json.Marshal(b.Template.Name)
	sb.WriteString(`{"template":` + string(tn) + `,"params":{`)
	for i, n := range names {
		if i > 0 {
			sb.WriteByte(',')
		}
		k, _ := json.Marshal(n)
		v, _ := json.Marshal(b.Text[n])
		sb.Write(k)
		sb.WriteByte(':')
		sb.Write(v)
	}
	sb.WriteString("}}")
	return []byte(sb.String())
}

// SHA256 is the hash (hex) of Canonical.
func (b *Bound) SHA256() string {
	s := sha256.Sum256(b.Canonical())
	return hex.EncodeToString(s[:])
}

// Bind checks values (parameter name → text, e.g. from the command line or
// a key-release request) against the template's parameters: every one
// given, none unknown, each of its type and within its bounds.
func (t *Template) Bind(values map[string]string) (*Bound, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: template %s: %s", ErrContract, t.Name, fmt.Sprintf(format, args...))
	}
	var unknown []string
	for n := range values {
		if t.param(n) == nil {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		known := make([]string, len(t.Params))
		for i, p := range t.Params {
			known[i] = p.Name
		}
		return nil, fail("unknown parameter %s (the template takes: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	b := &Bound{Template: t, Args: map[string]any{}, Text: map[string]string{}}
	for _, p := range t.Params {
		s, ok := values[p.Name]
		if !ok {
			return nil, fail("parameter %s (%s) not given", p.Name, p.Type)
		}
		v, err := p.value(s)
		if err != nil {
			return nil, fail("parameter %s: %v", p.Name, err)
		}
		b.Args[p.Name], b.Text[p.Name] = v, s
	}
	return b, nil
}

func (p *Param) value(s string) (any, error) {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return nil, fmt.Errorf("not valid UTF-8 text")
	}
	inRange := func(f float64) error {
		if p.Min != nil && f < *p.Min {
			return fmt.Errorf("%s is below the minimum %v", s, *p.Min)
		}
		if p.Max != nil && f > *p.Max {
			return fmt.Errorf("%s is above the maximum %v", s, *p.Max)
		}
		return nil
	}
	switch p.Type {
	case TypeInteger:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return v, inRange(float64(v))
	case TypeDouble:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q is not a finite number", s)
		}
		return v, inRange(v)
	case TypeString:
		if len(p.Enum) > 0 && !slices.Contains(p.Enum, s) {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(p.Enum, ", "))
		}
		if utf8.RuneCountInString(s) > p.MaxLen {
			return nil, fmt.Errorf("longer than %d characters", p.MaxLen)
		}
		return s, nil
	case TypeDate:
		v, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a date (YYYY-MM-DD)", s)
		}
		return v, nil
	case TypeBoolean:
		switch s {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("%q: want true or false", s)
	}
	return nil, fmt.Errorf("unknown type %q", p.Type)
}
