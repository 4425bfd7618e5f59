package tpch

import (
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
)

// Expected holds Q1's and Q6's answers recomputed in Go, with exact integer
// arithmetic, from the lineitem rows as they were generated — a check that
// does not trust DuckDB, the CSV path or the decryption.
type Expected struct {
	q1 map[[2]byte]*q1Group
	q6 big.Int // sum(l_extendedprice * l_discount), in units of 1e-4
}

type q1Group struct {
	qty, base int64   // quantity; cents
	disc      big.Int // cents × hundredths: 1e-4
	charge    big.Int // 1e-6
	discSum   int64   // hundredths
	count     int64
	dp, ch    int64 // int64 partial sums, flushed into disc/charge
}

func newExpected() *Expected { return &Expected{q1: map[[2]byte]*q1Group{}} }

// add takes one lineitem: quantity (units), price (cents), discount and tax
// (hundredths), flags, ship date (YYYY-MM-DD).
func (e *Expected) add(qty, price, disc, tax int64, rflag, lstatus byte, ship string) {
	if ship <= "1998-09-02" { // date '1998-12-01' - interval '90' day
		k := [2]byte{rflag, lstatus}
		g := e.q1[k]
		if g == nil {
			g = &q1Group{}
			e.q1[k] = g
		}
		g.qty += qty
		g.base += price
		g.discSum += disc
		g.count++
		dp := price * (100 - disc)
		g.dp += dp
		g.ch += dp * (100 + tax)
		if g.count%1024 == 0 { // keep the partial sums far from overflow
			g.flush()
		}
	}
	if ship >= "1994-01-01" && ship < "1995-01-01" && disc >= 5 && disc <= 7 && qty < 24 {
		e.q6.Add(&e.q6, big.NewInt(price*disc))
	}
}

func (g *q1Group) flush() {
	g.disc.Add(&g.disc, big.NewInt(g.dp))
	g.charge.Add(&g.charge, big.NewInt(g.ch))
	g.dp, g.ch = 0, 0
}

// decimal renders v × 10^-scale.
func decimal(v *big.Int, scale int) string {
	s := new(big.Int).Abs(v).String()
	for len(s) <= scale {
		s = "0" + s
	}
	out := s[:len(s)-scale] + "." + s[len(s)-scale:]
	if v.Sign() < 0 {
		out = "-" + out
	}
	return out
}

// checkQ1 compares Q1's rows (columns as in the spec) with the Go sums:
// sums exactly, averages within 1e-9 relative.
func (e *Expected) checkQ1(rows [][]string) error {
	keys := make([][2]byte, 0, len(e.q1))
	for k := range e.q1 {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return string(keys[i][:]) < string(keys[j][:]) })
	if len(rows) != len(keys) {
		return fmt.Errorf("Q1: %d groups, want %d", len(rows), len(keys))
	}
	for i, k := range keys {
		g := e.q1[k]
		g.flush()
		n := float64(g.count)
		want := []string{string(k[0]), string(k[1]), decimal(big.NewInt(g.qty*100), 2), decimal(big.NewInt(g.base), 2),
			decimal(&g.disc, 4), decimal(&g.charge, 6)}
		avg := []float64{float64(g.qty) / n, float64(g.base) / 100 / n, float64(g.discSum) / 100 / n}
		r := rows[i]
		if len(r) != 10 {
			return fmt.Errorf("Q1: row has %d columns, want 10", len(r))
		}
		for j, w := range want {
			if r[j] != w {
				return fmt.Errorf("Q1 group %s%s column %d: got %s, want %s", k[:1], k[1:], j+1, r[j], w)
			}
		}
		for j, w := range avg {
			got, err := strconv.ParseFloat(r[6+j], 64)
			if err != nil || !near(got, w, 1e-9) {
				return fmt.Errorf("Q1 group %c%c column %d: got %s, want %g", k[0], k[1], 7+j, r[6+j], w)
			}
		}
		if r[9] != strconv.FormatInt(g.count, 10) {
			return fmt.Errorf("Q1 group %c%c count: got %s, want %d", k[0], k[1], r[9], g.count)
		}
	}
	return nil
}

func (e *Expected) checkQ6(rows [][]string) error {
	want := decimal(&e.q6, 4)
	if e.q6.Sign() == 0 {
		want = "" // sum over no rows is NULL
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return fmt.Errorf("Q6: want one value, got %d rows", len(rows))
	}
	if got := strings.TrimSpace(rows[0][0]); got != want {
		return fmt.Errorf("Q6: revenue %s, want %s", got, want)
	}
	return nil
}

func near(a, b, rel float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	m := b
	if m < 0 {
		m = -m
	}
	return d <= rel*m || d < 1e-12
}
