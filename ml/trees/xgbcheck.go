package trees

import (
	"encoding/binary"
	"fmt"
	"math"
)

// xgbHeader is what teeml needs of an XGBoost binary model: checkXGBoost
// has walked the whole structure, so leaves reads it without indexing out
// of range or allocating more than the file holds.
type xgbHeader struct {
	baseScore float64
	features  int
	objective string
	booster   string // gbtree or dart
	outputs   int    // output groups (classes of multi:softprob)
	trees     int
	// patchGroups: num_output_group is 0 (XGBoost 1.x) and outputs comes
	// from the learner's num_class; groupsOffset is the field's offset.
	patchGroups  bool
	groupsOffset int
	// splits are the offsets of the inner nodes' split_cond (float32).
	splits      []int
	prefixBytes int // 4 when the file starts with XGBoost 1.x's "binf"
}

// Sizes of the fixed records of XGBoost's binary format (dmlc-core
// serialisation, as read by github.com/dmitryikh/leaves/internal/xgbin).
const (
	xgbLearnerParam = 136 // base_score, num_feature, num_class, 2 flags, 29 reserved
	xgbGBTreeParam  = 160 // num_trees, num_roots, num_feature, pad, num_pbuffer (8), num_output_group, size_leaf_vector, 32 reserved
	xgbTreeParam    = 148 // num_roots, num_nodes, num_deleted, max_depth, num_feature, size_leaf_vector, 31 reserved
	xgbNode         = 20  // parent, cleft, cright, sindex, info
	xgbStat         = 16  // loss_chg, sum_hess, base_weight, leaf_child_cnt
)

// checkXGBoost checks an XGBoost binary model (Booster.save_model to a
// file not named .json/.ubj): every length fits the file, every tree is a
// tree (children in range, no node reached twice), every split feature
// exists. Errors are one line without the file name.
func checkXGBoost(b []byte) (*xgbHeader, error) {
	h := &xgbHeader{}
	r := xgbReader{b: b}
	if len(b) >= 4 && string(b[:4]) == "binf" {
		r.off, h.prefixBytes = 4, 4
	}
	lp, err := r.take(xgbLearnerParam, "learner parameters")
	if err != nil {
		return nil, err
	}
	h.baseScore = float64(math.Float32frombits(binary.LittleEndian.Uint32(lp[0:])))
	nf := binary.LittleEndian.Uint32(lp[4:])
	if nf < 1 || nf > 1<<20 {
		return nil, fmt.Errorf("XGBoost model: num_feature %d: out of range", nf)
	}
	h.features = int(nf)
	numClass := int32(binary.LittleEndian.Uint32(lp[8:]))
	extraAttrs := binary.LittleEndian.Uint32(lp[12:]) != 0
	evalMetrics := binary.LittleEndian.Uint32(lp[16:]) != 0
	if h.objective, err = r.str("objective"); err != nil {
		return nil, err
	}
	if h.booster, err = r.str("booster"); err != nil {
		return nil, err
	}
	if h.booster != "gbtree" && h.booster != "dart" {
		return nil, fmt.Errorf("XGBoost model: booster %.40q: want gbtree or dart", h.booster)
	}
	h.groupsOffset = r.off + 24
	gp, err := r.take(xgbGBTreeParam, "gbtree parameters")
	if err != nil {
		return nil, err
	}
	nTrees := int32(binary.LittleEndian.Uint32(gp[0:]))
	nRoots := int32(binary.LittleEndian.Uint32(gp[4:]))
	groups := int32(binary.LittleEndian.Uint32(gp[24:]))
	if groups == 0 {
		groups, h.patchGroups = max(numClass, 1), true
	}
	if nTrees < 1 || nTrees > 1<<20 || nRoots != 1 || groups < 1 || groups > 1<<16 {
		return nil, fmt.Errorf("XGBoost model: %d trees, %d roots, %d output groups: out of range", nTrees, nRoots, groups)
	}
	h.trees, h.outputs = int(nTrees), int(groups)
	for t := range h.trees {
		if err := r.tree(t, h.features, &h.splits); err != nil {
			return nil, err
		}
	}
	if _, err := r.take(4*h.trees, "tree_info"); err != nil {
		return nil, err
	}
	if h.booster == "dart" {
		n, err := r.u64("dart weights")
		if err != nil {
			return nil, err
		}
		if n != uint64(h.trees) {
			return nil, fmt.Errorf("XGBoost model: %d dart weights for %d trees", n, h.trees)
		}
		if _, err := r.take(4*h.trees, "dart weights"); err != nil {
			return nil, err
		}
	}
	// XGBoost 1.x appends the learner's attributes (and eval metrics)
	// as vectors of strings; the file ends there.
	if extraAttrs {
		if err := r.strings("attributes", 2); err != nil {
			return nil, err
		}
	}
	if evalMetrics {
		if err := r.strings("eval metrics", 1); err != nil {
			return nil, err
		}
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("XGBoost model: %d bytes after the model", len(b)-r.off)
	}
	return h, nil
}

// strings checks a vector of n-tuples of strings.
func (r *xgbReader) strings(what string, n int) error {
	count, err := r.u64(what)
	if err != nil {
		return err
	}
	if count > 4096 {
		return fmt.Errorf("XGBoost model: %d %s: out of range", count, what)
	}
	for range int(count) * n {
		l, err := r.u64(what)
		if err != nil {
			return err
		}
		if l > 1<<20 {
			return fmt.Errorf("XGBoost model: %s: a string of %d bytes", what, l)
		}
		if _, err := r.take(int(l), what); err != nil {
			return err
		}
	}
	return nil
}

type xgbReader struct {
	b   []byte
	off int
}

func (r *xgbReader) take(n int, what string) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, fmt.Errorf("XGBoost model: truncated in %s (offset %d, %d bytes left, want %d)", what, r.off, len(r.b)-r.off, n)
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

func (r *xgbReader) u64(what string) (uint64, error) {
	p, err := r.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(p), nil
}

func (r *xgbReader) str(what string) (string, error) {
	n, err := r.u64(what)
	if err != nil {
		return "", err
	}
	if n > 256 {
		return "", fmt.Errorf("XGBoost model: %s is %d bytes long: not an XGBoost binary model", what, n)
	}
	p, err := r.take(int(n), what)
	return string(p), err
}

// tree checks tree t: node 0 is the root; a node with cleft -1 is a leaf;
// an inner node's children are distinct, in range and reached once (nodes
// XGBoost pruned stay in the arrays, unreachable, and are ignored).
func (r *xgbReader) tree(t, features int, splits *[]int) error {
	tp, err := r.take(xgbTreeParam, fmt.Sprintf("tree %d parameters", t))
	if err != nil {
		return err
	}
	roots := int32(binary.LittleEndian.Uint32(tp[0:]))
	nn := int32(binary.LittleEndian.Uint32(tp[4:]))
	tf := int32(binary.LittleEndian.Uint32(tp[16:]))
	leafVec := int32(binary.LittleEndian.Uint32(tp[20:]))
	if roots != 1 || nn < 1 || int(nn) > (len(r.b)-r.off)/(xgbNode+xgbStat) || tf > int32(features) {
		return fmt.Errorf("XGBoost model: tree %d: %d roots, %d nodes, %d features: out of range or truncated", t, roots, nn, tf)
	}
	nodesAt := r.off
	nodes, err := r.take(int(nn)*xgbNode, fmt.Sprintf("tree %d nodes", t))
	if err != nil {
		return err
	}
	if _, err := r.take(int(nn)*xgbStat, fmt.Sprintf("tree %d statistics", t)); err != nil {
		return err
	}
	if leafVec > 0 {
		n, err := r.u64(fmt.Sprintf("tree %d leaf vector", t))
		if err != nil {
			return err
		}
		if n > uint64(len(r.b)-r.off)/4 {
			return fmt.Errorf("XGBoost model: tree %d: leaf vector of %d values: truncated", t, n)
		}
		if _, err := r.take(int(n)*4, fmt.Sprintf("tree %d leaf vector", t)); err != nil {
			return err
		}
	}
	node := func(i int32) (left, right int32, feature uint32) {
		p := nodes[int(i)*xgbNode:]
		return int32(binary.LittleEndian.Uint32(p[4:])), int32(binary.LittleEndian.Uint32(p[8:])), binary.LittleEndian.Uint32(p[12:]) & (1<<31 - 1)
	}
	seen := make([]bool, nn)
	seen[0] = true
	stack := []int32{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		left, right, f := node(i)
		if left == -1 {
			continue
		}
		*splits = append(*splits, nodesAt+int(i)*xgbNode+16)
		if int(f) >= features {
			return fmt.Errorf("XGBoost model: tree %d node %d: split feature %d of %d", t, i, f, features)
		}
		for _, c := range []int32{left, right} {
			if c < 0 || c >= nn || seen[c] {
				return fmt.Errorf("XGBoost model: tree %d node %d: child %d out of range or reached twice", t, i, c)
			}
			seen[c] = true
			stack = append(stack, c)
		}
	}
	return nil
}
