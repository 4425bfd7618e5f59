// Command vflpsiws prepares a benchmark of `teeml vfl psi`: a SIMULATED
// two-party workspace (leader "bank", follower "shop"; fl/run's simulated
// PKI and evidence) and two generated ID files with a given overlap, plus
// the expected intersection, sorted. Used by bench/vfl_psi.sh.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/teeml/teeml/attest/policy"
	"github.com/teeml/teeml/party/partysim"
)

func main() {
	dir := flag.String("dir", "", "workspace directory to create")
	n := flag.Int("n", 1_000_000, "IDs per party")
	overlap := flag.Float64("overlap", 0.5, "fraction of each party's IDs that the other also holds")
	flag.Parse()
	if *dir == "" {
		log.Fatal("vflpsiws: -dir is required")
	}
	pol := partysim.Policy("leader", "follower")
	polPath := filepath.Join(*dir, "policies", "vfl.yaml")
	must(os.MkdirAll(filepath.Dir(polPath), 0o755))
	must(os.WriteFile(polPath, pol, 0o644))
	p, err := policy.Parse(pol, polPath)
	must(err)
	must(partysim.Federation(context.Background(), *dir, "vfl-bench",
		map[string]string{"bank": "leader", "shop": "follower"},
		map[string]*policy.Policy{"leader": p, "follower": p}))
	common := int(float64(*n) * *overlap)
	rng := rand.New(rand.NewPCG(7, 8))
	var expected []string
	for _, side := range []string{"bank", "shop"} {
		ids := make([]string, *n)
		for i := range ids {
			if i < common {
				ids[i] = fmt.Sprintf("customer-%09d", i)
			} else {
				ids[i] = fmt.Sprintf("%s-only-%09d", side, i)
			}
		}
		if side == "bank" {
			expected = slices.Clone(ids[:common])
		}
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		writeLines(filepath.Join(*dir, side+".ids"), ids)
	}
	slices.Sort(expected)
	writeLines(filepath.Join(*dir, "expected.sorted"), expected)
}

func writeLines(path string, lines []string) {
	f, err := os.Create(path)
	must(err)
	w := bufio.NewWriterSize(f, 1<<20)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	must(w.Flush())
	must(f.Close())
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
