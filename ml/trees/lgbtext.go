package trees

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// WriteText writes m in LightGBM's text model format (model.txt, version
// v3), which LightGBM and github.com/dmitryikh/leaves load.
func WriteText(w io.Writer, m *Model) error {
	k := m.K()
	obj := "regression"
	switch m.Objective {
	case ObjBinary:
		obj = "binary sigmoid:1"
	case ObjMulticlass:
		obj = fmt.Sprintf("multiclass num_class:%d", k)
	}
	blocks := make([]string, len(m.Trees))
	sizes := make([]string, len(m.Trees))
	for i, t := range m.Trees {
		blocks[i] = treeBlock(i, t)
		sizes[i] = strconv.Itoa(len(blocks[i]))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "tree\nversion=v3\nnum_class=%d\nnum_tree_per_iteration=%d\nlabel_index=0\nmax_feature_idx=%d\nobjective=%s\n",
		k, k, len(m.FeatureNames)-1, obj)
	if m.Average {
		b.WriteString("average_output\n")
	}
	names := make([]string, len(m.FeatureNames))
	for i, n := range m.FeatureNames {
		names[i] = strings.Map(func(r rune) rune {
			if r == ' ' || r == '=' || r == '\t' {
				return '_'
			}
			return r
		}, n)
	}
	fmt.Fprintf(&b, "feature_names=%s\ntree_sizes=%s\n\n", strings.Join(names, " "), strings.Join(sizes, " "))
	for _, bl := range blocks {
		b.WriteString(bl)
	}
	b.WriteString("end of trees\n")
	if len(m.Params) > 0 {
		keys := make([]string, 0, len(m.Params))
		for k := range m.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("\nparameters:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "[%s: %s]\n", k, m.Params[k])
		}
		b.WriteString("end of parameters\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func treeBlock(i int, t *Tree) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Tree=%d\nnum_leaves=%d\nnum_cat=%d\n", i, t.NumLeaves(), t.numCat())
	if t.NumLeaves() > 1 {
		fmt.Fprintf(&b, "split_feature=%s\n", ints(t.SplitFeature))
		fmt.Fprintf(&b, "split_gain=%s\n", floats(t.SplitGain))
		fmt.Fprintf(&b, "threshold=%s\n", floats(t.Threshold))
		fmt.Fprintf(&b, "decision_type=%s\n", ints(t.DecisionType))
		fmt.Fprintf(&b, "left_child=%s\n", ints(t.Left))
		fmt.Fprintf(&b, "right_child=%s\n", ints(t.Right))
	}
	fmt.Fprintf(&b, "leaf_value=%s\n", floats(t.LeafValue))
	if len(t.LeafCount) == t.NumLeaves() {
		fmt.Fprintf(&b, "leaf_count=%s\n", ints(t.LeafCount))
	}
	if t.numCat() > 0 {
		fmt.Fprintf(&b, "cat_boundaries=%s\n", ints(t.CatBoundaries))
		u := make([]int, len(t.CatThreshold))
		for j, v := range t.CatThreshold {
			u[j] = int(v)
		}
		fmt.Fprintf(&b, "cat_threshold=%s\n", ints(u))
	}
	b.WriteString("is_linear=0\nshrinkage=1\n\n")
	return b.String()
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, " ")
}

func floats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(s, " ")
}

// ParseText reads a model written by WriteText (name labels errors:
// "model NAME: line N: reason").
func ParseText(r io.Reader, name string) (*Model, error) { return parseText(r, name, false) }

// parseText is ParseText; anyObjective also accepts a LightGBM model whose
// objective teeml does not train (poisson, lambdarank, …): Objective keeps
// LightGBM's text and the model is checked, not predicted by teeml.
func parseText(r io.Reader, name string, anyObjective bool) (*Model, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	line := 0
	fail := func(format string, a ...any) error {
		return fmt.Errorf("model %s: line %d: "+format, append([]any{name, line}, a...)...)
	}
	// block reads key=value lines up to a blank line or EOF.
	block := func() (map[string]string, int, bool, error) {
		kv := map[string]string{}
		start := 0
		for sc.Scan() {
			line++
			s := strings.TrimSpace(sc.Text())
			if s == "" {
				if len(kv) == 0 {
					continue
				}
				return kv, start, true, nil
			}
			if start == 0 {
				start = line
			}
			k, v, _ := strings.Cut(s, "=")
			if _, dup := kv[k]; dup {
				return nil, start, false, fail("duplicate key %q", k)
			}
			kv[k] = v
		}
		if err := sc.Err(); err != nil {
			return nil, start, false, fail("%w", err)
		}
		return kv, start, len(kv) > 0, nil
	}
	hdr, _, ok, err := block()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fail("empty file")
	}
	if _, ok := hdr["tree"]; !ok {
		return nil, fmt.Errorf("model %s: line 1: not a LightGBM text model (no \"tree\" header)", name)
	}
	if v := hdr["version"]; v != "v3" && v != "v2" {
		return nil, fail("header: version %q, want v3", v)
	}
	atoi := func(k string) (int, error) {
		n, err := strconv.Atoi(hdr[k])
		if err != nil {
			return 0, fail("header: %s: %w", k, err)
		}
		return n, nil
	}
	nc, err := atoi("num_class")
	if err != nil {
		return nil, err
	}
	npi, err := atoi("num_tree_per_iteration")
	if err != nil {
		return nil, err
	}
	mfi, err := atoi("max_feature_idx")
	if err != nil {
		return nil, err
	}
	if nc < 1 || nc > 1<<16 || npi != nc || mfi < 0 || mfi > 1<<20 {
		return nil, fail("header: num_class %d, num_tree_per_iteration %d, max_feature_idx %d: out of range", nc, npi, mfi)
	}
	m := &Model{NumClass: nc}
	_, m.Average = hdr["average_output"]
	obj := hdr["objective"]
	switch {
	case obj == "binary sigmoid:1" && nc == 1:
		m.Objective = ObjBinary
	case obj == fmt.Sprintf("multiclass num_class:%d", nc) && nc > 1:
		m.Objective = ObjMulticlass
	case strings.HasPrefix(obj, "regression") && nc == 1:
		m.Objective = ObjRegression
	case anyObjective && obj != "":
		m.Objective = obj
	default:
		return nil, fail("header: objective %q with num_class %d: unsupported", obj, nc)
	}
	if fn := hdr["feature_names"]; fn != "" {
		m.FeatureNames = strings.Split(fn, " ")
	}
	if len(m.FeatureNames) != mfi+1 {
		return nil, fail("header: %d feature names for max_feature_idx %d", len(m.FeatureNames), mfi)
	}
	nTrees := len(strings.Fields(hdr["tree_sizes"]))
	if nTrees == 0 || nTrees%nc != 0 {
		return nil, fail("header: tree_sizes lists %d trees, want a positive multiple of %d", nTrees, nc)
	}
	for i := range nTrees {
		kv, start, ok, err := block()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fail("truncated: tree %d of %d missing", i, nTrees)
		}
		line0 := line
		line = start
		t, err := parseTree(kv, i, mfi+1)
		if err != nil {
			return nil, fail("tree %d: %w", i, err)
		}
		line = line0
		m.Trees = append(m.Trees, t)
	}
	for sc.Scan() {
		line++
		if s := strings.TrimSpace(sc.Text()); s != "" {
			if s == "end of trees" {
				return m, parseParams(sc, &line, m, fail)
			}
			return nil, fail("want \"end of trees\", got %.40q", s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fail("%w", err)
	}
	return nil, fail("truncated: no \"end of trees\"")
}

// parseParams reads an optional "parameters:" section after the trees;
// other trailing sections (LightGBM's feature_importances) are skipped.
func parseParams(sc *bufio.Scanner, line *int, m *Model, fail func(string, ...any) error) error {
	in := false
	for sc.Scan() {
		*line++
		s := strings.TrimSpace(sc.Text())
		switch {
		case s == "parameters:":
			in = true
		case s == "end of parameters":
			in = false
		case in && s != "":
			k, v, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), ": ")
			if !ok || !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
				return fail("parameters: want [key: value], got %.40q", s)
			}
			if m.Params == nil {
				m.Params = map[string]string{}
			}
			m.Params[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return fail("%w", err)
	}
	return nil
}

func parseTree(kv map[string]string, i, nFeat int) (*Tree, error) {
	if kv["Tree"] != strconv.Itoa(i) {
		return nil, fmt.Errorf("header Tree=%q, want Tree=%d", kv["Tree"], i)
	}
	nl, err := strconv.Atoi(kv["num_leaves"])
	if err != nil || nl < 1 || nl > 1<<20 {
		return nil, fmt.Errorf("num_leaves %q: want a positive integer", kv["num_leaves"])
	}
	ncat, err := strconv.Atoi(kv["num_cat"])
	if err != nil || ncat < 0 || ncat >= nl {
		return nil, fmt.Errorf("num_cat %q: out of range", kv["num_cat"])
	}
	t := &Tree{}
	if t.LeafValue, err = floatList(kv, "leaf_value", nl); err != nil {
		return nil, err
	}
	if _, ok := kv["leaf_count"]; ok {
		if t.LeafCount, err = intList(kv, "leaf_count", nl); err != nil {
			return nil, err
		}
	}
	if nl == 1 {
		return t, nil
	}
	nn := nl - 1
	if t.SplitFeature, err = intList(kv, "split_feature", nn); err != nil {
		return nil, err
	}
	if _, ok := kv["split_gain"]; ok {
		if t.SplitGain, err = floatList(kv, "split_gain", nn); err != nil {
			return nil, err
		}
	} else {
		t.SplitGain = make([]float64, nn)
	}
	if t.Threshold, err = floatList(kv, "threshold", nn); err != nil {
		return nil, err
	}
	if t.DecisionType, err = intList(kv, "decision_type", nn); err != nil {
		return nil, err
	}
	if t.Left, err = intList(kv, "left_child", nn); err != nil {
		return nil, err
	}
	if t.Right, err = intList(kv, "right_child", nn); err != nil {
		return nil, err
	}
	if ncat > 0 {
		if t.CatBoundaries, err = intList(kv, "cat_boundaries", ncat+1); err != nil {
			return nil, err
		}
		ct := strings.Fields(kv["cat_threshold"])
		for _, s := range ct {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("cat_threshold: %w", err)
			}
			t.CatThreshold = append(t.CatThreshold, uint32(v))
		}
		if t.CatBoundaries[0] != 0 {
			return nil, fmt.Errorf("cat_boundaries must start at 0")
		}
		for j := 1; j <= ncat; j++ {
			if t.CatBoundaries[j] < t.CatBoundaries[j-1] || t.CatBoundaries[j] > len(t.CatThreshold) {
				return nil, fmt.Errorf("cat_boundaries[%d]=%d out of range", j, t.CatBoundaries[j])
			}
		}
	}
	// Every node and leaf is the child of exactly one node; node 0 is the
	// root; so the walk from the root always ends in a leaf.
	seenNode := make([]bool, nn)
	seenLeaf := make([]bool, nl)
	for n := range nn {
		if f := t.SplitFeature[n]; f < 0 || f >= nFeat {
			return nil, fmt.Errorf("node %d: split_feature %d out of range", n, f)
		}
		dt := t.DecisionType[n]
		if dt < 0 || dt > 15 {
			return nil, fmt.Errorf("node %d: decision_type %d out of range", n, dt)
		}
		if dt&decCategorical != 0 {
			ci := t.Threshold[n]
			if !(ci >= 0 && ci < float64(ncat)) || ci != float64(int(ci)) {
				return nil, fmt.Errorf("node %d: categorical threshold %v out of range", n, ci)
			}
		}
		for _, c := range []int{t.Left[n], t.Right[n]} {
			switch {
			case c < 0 && ^c < nl:
				if seenLeaf[^c] {
					return nil, fmt.Errorf("node %d: leaf %d has two parents", n, ^c)
				}
				seenLeaf[^c] = true
			case c > n && c < nn:
				if seenNode[c] {
					return nil, fmt.Errorf("node %d: node %d has two parents", n, c)
				}
				seenNode[c] = true
			default:
				return nil, fmt.Errorf("node %d: child %d out of range (children come after their parent)", n, c)
			}
		}
	}
	return t, nil
}

func fieldList(kv map[string]string, key string, n int) ([]string, error) {
	v, ok := kv[key]
	if !ok {
		return nil, fmt.Errorf("no %s", key)
	}
	f := strings.Fields(v)
	if len(f) != n {
		return nil, fmt.Errorf("%s has %d values, want %d", key, len(f), n)
	}
	return f, nil
}

func intList(kv map[string]string, key string, n int) ([]int, error) {
	f, err := fieldList(kv, key, n)
	if err != nil {
		return nil, err
	}
	out := make([]int, n)
	for i, s := range f {
		if out[i], err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
	}
	return out, nil
}

func floatList(kv map[string]string, key string, n int) ([]float64, error) {
	f, err := fieldList(kv, key, n)
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	for i, s := range f {
		if out[i], err = strconv.ParseFloat(s, 64); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
	}
	return out, nil
}
