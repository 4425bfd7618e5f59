package tpch

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sf1 is, for each query at SF1 with the validation parameters, the row
// count and the first row of the TPC-H answer set (the values published
// with the TPC-H specification; trailing columns may be left out). Numbers
// match within one unit of the last decimal given; text matches exactly.
var sf1 = [NumQueries]struct {
	rows  int
	first []string
}{
	{4, []string{"A", "F", "37734107.00", "56586554400.73", "53758257134.87", "55909065222.83", "25.52", "38273.13", "0.05", "1478493"}},
	{100, []string{"9938.53", "Supplier#000005359", "UNITED KINGDOM", "185358", "Manufacturer#4", "QKuHYh,vZGiwu2FWEJoLDx04", "33-429-790-6131", "uriously regular requests hag"}},
	{10, []string{"2456423", "406181.01", "1995-03-05", "0"}},
	{5, []string{"1-URGENT", "10594"}},
	{5, []string{"INDONESIA", "55502041.17"}},
	{1, []string{"123141078.23"}},
	{4, []string{"FRANCE", "GERMANY", "1995", "54639732.73"}},
	{2, []string{"1995", "0.0344"}},
	{175, []string{"ALGERIA", "1998", "27136900.18"}},
	{20, []string{"57040", "Customer#000057040", "734235.25", "632.87", "JAPAN", "Eioyzjf4pp", "22-895-641-3466"}},
	{1048, []string{"129760", "17538456.86"}},
	{2, []string{"MAIL", "6202", "9324"}},
	{42, []string{"0", "50005"}},
	{1, []string{"16.38"}},
	{1, []string{"8449", "Supplier#000008449", "Wp34zim9qYFbVctdW", "20-469-856-8873", "1772627.2087"}},
	{18314, []string{"Brand#41", "MEDIUM BRUSHED TIN", "3", "28"}},
	{1, []string{"348406.05"}},
	{57, []string{"Customer#000128120", "128120", "4722021", "1994-04-07", "544089.09", "323.00"}},
	{1, []string{"3083843.0578"}},
	{186, []string{"Supplier#000000020", "iybAE,RmTymrZVYaFZva2SH,j"}},
	{100, []string{"Supplier#000002829", "20"}},
	{7, []string{"13", "888", "6737713.99"}},
}

// checkSF1 compares an SF1 answer with the answer set's row count and
// first row.
func checkSF1(a Answer) error {
	ref := sf1[a.Query-1]
	if len(a.Rows) != ref.rows {
		return fmt.Errorf("Q%d: %d rows, the SF1 answer set has %d", a.Query, len(a.Rows), ref.rows)
	}
	row := a.Rows[0]
	if len(row) < len(ref.first) {
		return fmt.Errorf("Q%d: %d columns, want at least %d", a.Query, len(row), len(ref.first))
	}
	for i, want := range ref.first {
		if !matches(row[i], want) {
			return fmt.Errorf("Q%d column %s: %s, the SF1 answer set has %s", a.Query, a.Columns[i], row[i], want)
		}
	}
	return nil
}

// matches compares got with a reference value: numbers within one unit of
// the reference's last decimal, anything else exactly.
func matches(got, want string) bool {
	if got == want {
		return true
	}
	w, errW := strconv.ParseFloat(want, 64)
	g, errG := strconv.ParseFloat(got, 64)
	if errW != nil || errG != nil || !strings.ContainsAny(want, "0123456789") {
		return false
	}
	dec := 0
	if i := strings.IndexByte(want, '.'); i >= 0 {
		dec = len(want) - i - 1
	}
	if dec == 0 {
		return false // integers (keys, counts) match exactly only
	}
	return math.Abs(g-w) <= math.Pow(10, -float64(dec))*1.000001
}
