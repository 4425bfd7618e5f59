package cleanroom

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Demo segments; "student" is kept rare among the shared customers so
// that the quickstart shows a group below k being suppressed.
var demoSegments = []string{"budget", "family", "premium", "student"}

// DemoData returns the quickstart's synthetic tables as CSV (header row
// first): a bank's customers (customer_id, balance, flagged) and a
// retailer's (customer_id, segment, spend, since). The two share shared
// customer IDs; each also has customers of its own. Deterministic in seed.
func DemoData(seed uint64, bankOnly, shared, retailOnly int) (bank, retail []byte) {
	r := rand.New(rand.NewPCG(seed, 0x7ee31))
	var b, t bytes.Buffer
	bw, tw := csv.NewWriter(&b), csv.NewWriter(&t)
	bw.Write([]string{"customer_id", "balance", "flagged"})
	tw.Write([]string{"customer_id", "segment", "spend", "since"})
	day0 := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	id := func(i int) string { return fmt.Sprintf("C%07d", i) }
	bankRow := func(i int) {
		bal := math.Round(math.Exp(8+1.2*r.NormFloat64())*100) / 100
		bw.Write([]string{id(i), strconv.FormatFloat(bal, 'f', 2, 64), strconv.FormatBool(r.Float64() < 0.04)})
	}
	retailRow := func(i int, students bool) {
		seg := demoSegments[r.IntN(3)]
		if students {
			seg = "student"
		}
		spend := math.Round(math.Exp(5.5+0.9*r.NormFloat64())*100) / 100
		since := day0.AddDate(0, 0, r.IntN(3*365)).Format(time.DateOnly)
		tw.Write([]string{id(i), seg, strconv.FormatFloat(spend, 'f', 2, 64), since})
	}
	n := 0
	for range bankOnly {
		n++
		bankRow(n)
	}
	for k := range shared {
		n++
		bankRow(n)
		retailRow(n, k < 3) // three shared students: below any k ≥ 4
	}
	for k := range retailOnly {
		n++
		retailRow(n, k%5 == 0) // students the bank does not have
	}
	bw.Flush()
	tw.Flush()
	return b.Bytes(), t.Bytes()
}
