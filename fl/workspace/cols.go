package workspace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/fl/plan"
	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/pki"
)

// Collaborator is one plan/cols.yaml entry.
type Collaborator struct {
	// Name is the collaborator's member name (pki.CheckName rules; it is
	// its certificate CN).
	Name string
	// Data is "shard:N" — partition N of the plan's dataset (simulation) —
	// or the path of a CSV file (relative to the workspace, or absolute)
	// with the plan dataset's feature columns and a "label" column; the
	// file may be sealed (.csv.sealed) or Parquet (.parquet, encrypted or
	// not), see LoadShardWith.
	Data string
}

// ShardPrefix marks a data path naming a partition of the plan's dataset.
const ShardPrefix = "shard:"

// Shard returns N for a "shard:N" data path, or -1.
func (c Collaborator) Shard() int {
	s, ok := strings.CutPrefix(c.Data, ShardPrefix)
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || strconv.Itoa(n) != s {
		return -1
	}
	return n
}

func checkData(data string) error {
	switch {
	case data == "":
		return errors.New("data path is empty")
	case strings.HasPrefix(data, ShardPrefix):
		if (Collaborator{Data: data}).Shard() < 0 {
			return fmt.Errorf("data path %q: want shard:N with N a non-negative integer", data)
		}
	case strings.ContainsFunc(data, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("data path %q contains control characters", data)
	case !hasDataSuffix(data):
		return fmt.Errorf("data path %q: want shard:N or a .csv, .csv.sealed or .parquet file", data)
	}
	return nil
}

// ParseCollaborators parses a cols.yaml:
//
//	collaborators:
//	  - name: bank-a
//	    data: shard:0
//
// Names must be valid member names and unique; shard data paths unique.
// name prefixes errors.
func ParseCollaborators(data []byte, name string) ([]Collaborator, error) {
	errf := func(n *yaml.Node, format string, args ...any) error {
		where := name
		if n != nil && n.Line > 0 {
			where = fmt.Sprintf("%s:%d", name, n.Line)
		}
		return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errf(nil, "empty file")
		}
		return nil, errf(nil, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errf(&extra, "more than one YAML document")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errf(root, "must be a mapping with key collaborators")
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Value != "collaborators" {
			return nil, errf(k, "%q: unknown key (known: collaborators)", k.Value)
		}
		if list != nil {
			return nil, errf(k, "collaborators: duplicate key")
		}
		list = root.Content[i+1]
	}
	if list == nil {
		return nil, errf(root, "collaborators: missing")
	}
	if list.Kind != yaml.SequenceNode {
		return nil, errf(list, "collaborators: must be a list")
	}
	var out []Collaborator
	names, shards := map[string]int{}, map[string]int{}
	for i, item := range list.Content {
		key := fmt.Sprintf("collaborators[%d]", i)
		if item.Kind != yaml.MappingNode || item.Anchor != "" {
			return nil, errf(item, "%s: must be a mapping with keys name, data", key)
		}
		var c Collaborator
		seen := map[string]bool{}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], item.Content[j+1]
			if k.Value != "name" && k.Value != "data" {
				return nil, errf(k, "%s.%q: unknown key (known: name, data)", key, k.Value)
			}
			if seen[k.Value] {
				return nil, errf(k, "%s.%s: duplicate key", key, k.Value)
			}
			seen[k.Value] = true
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
				return nil, errf(v, "%s.%s: must be a string", key, k.Value)
			}
			if k.Value == "name" {
				c.Name = v.Value
			} else {
				c.Data = v.Value
			}
		}
		if !seen["name"] || !seen["data"] {
			return nil, errf(item, "%s: needs name and data", key)
		}
		if err := pki.CheckName(c.Name); err != nil {
			return nil, errf(item, "%s.name: %v", key, err)
		}
		if err := checkData(c.Data); err != nil {
			return nil, errf(item, "%s.data: %v", key, err)
		}
		if prev, ok := names[c.Name]; ok {
			return nil, errf(item, "%s.name: collaborator %q already listed at collaborators[%d]", key, c.Name, prev)
		}
		names[c.Name] = i
		if c.Shard() >= 0 {
			if prev, ok := shards[c.Data]; ok {
				return nil, errf(item, "%s.data: %s already assigned to collaborators[%d]", key, c.Data, prev)
			}
			shards[c.Data] = i
		}
		out = append(out, c)
	}
	return out, nil
}

// MarshalCollaborators encodes a collaborator list as cols.yaml.
func MarshalCollaborators(cols []Collaborator) []byte {
	var b bytes.Buffer
	b.WriteString("# Collaborators of this federation (teeml fl collaborator create -n NAME -d DATA_PATH).\n")
	b.WriteString("# data: \"shard:N\" (partition N of the plan's dataset) or a CSV file.\n")
	if len(cols) == 0 {
		b.WriteString("collaborators: []\n")
		return b.Bytes()
	}
	b.WriteString("collaborators:\n")
	for _, c := range cols {
		fmt.Fprintf(&b, "  - name: %s\n    data: %s\n", strconv.Quote(c.Name), strconv.Quote(c.Data))
	}
	return b.Bytes()
}

// LoadCollaborators reads the workspace's plan/cols.yaml.
func LoadCollaborators(ws string) ([]Collaborator, error) {
	path := filepath.Join(ws, filepath.FromSlash(ColsFile))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	return ParseCollaborators(data, path)
}

// AddCollaborator is `teeml fl collaborator create -n NAME -d DATA_PATH`:
// it appends the collaborator to plan/cols.yaml (rewritten atomically,
// under a lock so concurrent calls do not lose entries). It refuses invalid
// names, a name already listed, a shard index outside the plan's
// data_loader.partitioning.shards, or a shard already assigned.
func AddCollaborator(ws, name, dataPath string) error {
	if err := pki.CheckName(name); err != nil {
		return fmt.Errorf("workspace: collaborator create -n: %w", err)
	}
	if err := checkData(dataPath); err != nil {
		return fmt.Errorf("workspace: collaborator %s: %w", name, err)
	}
	p, err := plan.Load(filepath.Join(ws, filepath.FromSlash(PlanFile)))
	if err != nil {
		return err
	}
	c := Collaborator{Name: name, Data: dataPath}
	if s := c.Shard(); s >= p.DataLoader.Partitioning.Shards {
		return fmt.Errorf("workspace: collaborator %s: %s outside the plan's %d shards (data_loader.partitioning.shards)", name, dataPath, p.DataLoader.Partitioning.Shards)
	}
	unlock, err := lock(filepath.Join(ws, "plan", ".cols.lock"))
	if err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	defer unlock()
	cols, err := LoadCollaborators(ws)
	if err != nil {
		return err
	}
	for _, o := range cols {
		if o.Name == name {
			return fmt.Errorf("workspace: collaborator %s: already in %s", name, ColsFile)
		}
		if c.Shard() >= 0 && o.Data == c.Data {
			return fmt.Errorf("workspace: collaborator %s: %s already assigned to %s", name, dataPath, o.Name)
		}
	}
	cols = append(cols, c)
	return atomicfile.WriteBytes(filepath.Join(ws, filepath.FromSlash(ColsFile)), MarshalCollaborators(cols), 0o644)
}
