// Package yamlx is teeml's strict YAML: one document, no anchors, aliases or
// merge keys, no duplicate or unknown keys, and one error style for every
// configuration file (plans, policies):
//
//	plan.yaml:14: aggregator.rounds_to_train: must be ≥ 1, got 0
//
// that is file:line: dotted.key: reason, on one line. Error carries those
// parts, and the cause when there is one.
//
// Two ways in: Document returns the checked root node for parsers that walk
// it with a Walker (Mapping refuses unknown and duplicate keys and records
// each key's line), and Decode decodes straight into a struct with unknown
// keys refused.
//
// Every YAML input is size-capped: ReadFile is the one reader of YAML files
// (it never reads more than the cap plus one byte), and Document and Decode
// refuse longer data; a cap ≤ 0 means MaxSize.
package yamlx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem in a YAML file: File:Line: Key: Reason. Line is 0 when
// unknown and Key "" when the problem is not one key's; File "" is left out.
type Error struct {
	File   string
	Line   int
	Key    string // dotted key, list items as key[i]
	Reason string // one line
	Err    error  // cause, if any (Unwrap)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		} else {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Key)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error whose reason is format and args (%w allowed: the
// wrapped error becomes the cause), made one line.
func Errorf(file string, line int, key, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{File: file, Line: line, Key: key, Reason: OneLine(err.Error()), Err: errors.Unwrap(err)}
}

// OneLine folds newlines into "; " and runs of white space into one space.
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// Join is prefix.key, or key when prefix is "".
func Join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// KeyName is a key as shown in errors: quoted unless a plain identifier.
func KeyName(k string) string {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return strconv.Quote(k)
		}
	}
	if k == "" {
		return `""`
	}
	return k
}

// KindName describes a node's kind for errors: "a mapping", "a string"…
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!str":
			return "a string"
		}
		return "a scalar " + n.ShortTag()
	}
	return "an alias"
}

// MaxSize is the default cap on a YAML input (plans, configurations,
// release policies, repositories): 1 MiB.
const MaxSize = 1 << 20

// ErrTooLarge marks a YAML input over its size cap (errors.Is).
var ErrTooLarge = errors.New("YAML input over its size cap")

func capOf(maxSize int) int {
	if maxSize <= 0 {
		return MaxSize
	}
	return maxSize
}

// ReadFile reads the YAML file path of at most maxSize bytes (≤ 0:
// MaxSize). A larger file is refused after reading maxSize+1 bytes, so a
// huge file never fills memory: "path: what is larger than N bytes (the
// size cap)". what names the content ("policy", "plan").
func ReadFile(path, what string, maxSize int) ([]byte, error) {
	limit := capOf(maxSize)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(b) > limit {
		return nil, &Error{File: path, Reason: fmt.Sprintf("%s is larger than %d bytes (the size cap)", what, limit), Err: ErrTooLarge}
	}
	return b, nil
}

// Document parses data as exactly one YAML document and returns its root
// node. what names the content in errors ("plan is empty"); data longer
// than maxSize (≤ 0: MaxSize) is refused. Anchors, aliases and merge keys
// are refused; keys are not checked here (see Walker.Mapping).
func Document(data []byte, file, what string, maxSize int) (*yaml.Node, error) {
	if limit := capOf(maxSize); len(data) > limit {
		return nil, &Error{File: file, Reason: fmt.Sprintf("%s is %d bytes, at most %d", what, len(data), limit), Err: ErrTooLarge}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errorf(file, 0, "", "%s is empty", what)
		}
		return nil, syntaxErr(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, Errorf(file, extra.Line, "", "more than one YAML document")
	}
	if len(doc.Content) == 0 {
		return nil, Errorf(file, 0, "", "%s is empty", what)
	}
	if err := noAliases(file, &doc); err != nil {
		return nil, err
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// syntaxErr turns a yaml.v3 error into an Error, its "line N:" moved into
// Line when it has one.
func syntaxErr(file string, err error) *Error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = OneLine(strings.TrimPrefix(msg, "yaml: "))
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: l, Reason: m[2], Err: err}
	}
	return &Error{File: file, Reason: msg, Err: err}
}

func noAliases(file string, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return Errorf(file, n.Line, "", "YAML anchors and aliases are not supported")
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge" {
		return Errorf(file, n.Line, "", "YAML merge keys are not supported")
	}
	for _, c := range n.Content {
		if err := noAliases(file, c); err != nil {
			return err
		}
	}
	return nil
}

// Field is one key a mapping accepts.
type Field struct {
	Key      string
	Required bool
	Parse    func(key string, v *yaml.Node) error // key is the dotted key
}

// Walker walks a Document's nodes, recording each dotted key's line.
type Walker struct {
	File  string
	Lines map[string]int // dotted key → line of its value; nil: not recorded
	// Root names the top-level mapping in "known in …" (e.g. "plan").
	Root string
}

// Errorf is an Error at node n (nil: no line).
func (w *Walker) Errorf(n *yaml.Node, key, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return Errorf(w.File, line, key, format, args...)
}

// Line is the recorded line of key or of the nearest enclosing key
// (a.b[2].c, a.b[2], a.b, a), 0 if none.
func (w *Walker) Line(key string) int {
	for k := key; k != ""; {
		if l, ok := w.Lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// Keys walks mapping n under prefix: keys must be strings and appear once;
// f is called for each key with its dotted name.
func (w *Walker) Keys(n *yaml.Node, prefix string, f func(key string, k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return w.Errorf(n, prefix, "must be a mapping, got %s", KindName(n))
	}
	if prefix != "" && w.Lines != nil {
		w.Lines[prefix] = n.Line
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return w.Errorf(k, prefix, "keys must be strings, got %s", KindName(k))
		}
		key := Join(prefix, KeyName(k.Value))
		if first, dup := seen[k.Value]; dup {
			return w.Errorf(k, key, "duplicate key (first at line %d)", first)
		}
		seen[k.Value] = k.Line
		if w.Lines != nil {
			w.Lines[key] = v.Line
		}
		if err := f(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

// Mapping walks mapping n under prefix: every key must be one of fields,
// appear once, and required ones must be present.
func (w *Walker) Mapping(n *yaml.Node, prefix string, fields []Field) error {
	what := prefix
	if what == "" {
		what = w.Root
	}
	seen := map[string]bool{}
	err := w.Keys(n, prefix, func(key string, k, v *yaml.Node) error {
		var f *Field
		for j := range fields {
			if fields[j].Key == k.Value {
				f = &fields[j]
			}
		}
		if f == nil {
			known := make([]string, len(fields))
			for j := range fields {
				known[j] = fields[j].Key
			}
			return w.Errorf(k, key, "unknown key (known in %s: %s)", what, strings.Join(known, ", "))
		}
		seen[f.Key] = true
		return f.Parse(key, v)
	})
	if err != nil {
		return err
	}
	for _, f := range fields {
		if f.Required && !seen[f.Key] {
			return w.Errorf(n, Join(prefix, f.Key), "missing")
		}
	}
	return nil
}

// Sequence walks list n at key, at most max items (max ≤ 0: no bound);
// f gets each item's key, key[i].
func (w *Walker) Sequence(n *yaml.Node, key string, max int, f func(key string, item *yaml.Node) error) error {
	if n.Kind != yaml.SequenceNode {
		return w.Errorf(n, key, "must be a list, got %s", KindName(n))
	}
	if max > 0 && len(n.Content) > max {
		return w.Errorf(n, key, "at most %d entries, got %d", max, len(n.Content))
	}
	for i, item := range n.Content {
		k := fmt.Sprintf("%s[%d]", key, i)
		if w.Lines != nil {
			w.Lines[k] = item.Line
		}
		if err := f(k, item); err != nil {
			return err
		}
	}
	return nil
}

var unknownField = regexp.MustCompile(`^field \S+ not found in type`)

// Decode decodes one strict YAML document (see Document) into the struct
// v, unknown keys refused with "unknown key (not part of the <what>
// format)" and duplicate keys refused. It returns each dotted key's line,
// for errors found later (see Walker.Line).
func Decode(data []byte, file, what string, maxSize int, v any) (map[string]int, error) {
	root, err := Document(data, file, what, maxSize)
	if err != nil {
		return nil, err
	}
	w := &Walker{File: file, Lines: map[string]int{}}
	if err := w.record(root, ""); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		e := syntaxErr(file, err)
		if unknownField.MatchString(e.Reason) {
			e.Reason = "unknown key (not part of the " + what + " format)"
		}
		// Name the key on that line when there is one.
		for k, l := range w.Lines {
			if l == e.Line && len(k) > len(e.Key) {
				e.Key = k
			}
		}
		return nil, e
	}
	return w.Lines, nil
}

// record records the line of every mapping key under n (the key's own
// line, keys in lists not recorded) and refuses duplicate and non-string
// keys.
func (w *Walker) record(n *yaml.Node, prefix string) error {
	keys := &Walker{File: w.File}
	switch n.Kind {
	case yaml.MappingNode:
		return keys.Keys(n, prefix, func(key string, k, v *yaml.Node) error {
			w.Lines[key] = k.Line
			return w.record(v, key)
		})
	case yaml.SequenceNode:
		items := &Walker{File: w.File, Lines: map[string]int{}} // checked, not kept
		for _, c := range n.Content {
			if err := items.record(c, prefix); err != nil {
				return err
			}
		}
	}
	return nil
}
