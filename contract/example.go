package contract

import (
	"crypto/ecdh"
	"encoding/hex"
	"fmt"
	"strings"
)

// ExampleOptions fill Example.
type ExampleOptions struct {
	// Attestation is the analytics party's attest/policy role (YAML, the
	// role's keys; indented further as a block).
	Attestation string
	// Recipients' HPKE public keys by member.
	Recipients map[string]*ecdh.PublicKey
	// BankEpsilon and RetailEpsilon are the owners' budgets.
	BankEpsilon, RetailEpsilon float64
	MinGroupSize               int
}

// Example is the clean-room contract of teeml cleanroom quickstart: a bank
// and a retailer, their customer tables joined on a shared customer ID, an
// analytics party, and four templates (a segment join aggregate with k
// suppression, the same with Laplace noise, a fraud-ring count, and a
// training template that releases only a GBDT predicting the segment).
func Example(o ExampleOptions) []byte {
	var rec strings.Builder
	for _, name := range sortedKeys(o.Recipients) {
		fmt.Fprintf(&rec, "  %s:\n    hpke_p256: %s\n", name, hex.EncodeToString(o.Recipients[name].Bytes()))
	}
	return fmt.Appendf(nil, `# teeml clean-room contract (docs/cleanroom.md). Every owner signs these
# exact bytes; the key brokers release an owner's key only for this hash.
contract: bank-retail-demo
min_group_size: %d
owners:
  bank:
    key: bank-data
    epsilon: %v
  retailer:
    key: retail-data
    epsilon: %v
tables:
  bank_customers:
    owner: bank
    columns:
      customer_id: VARCHAR
      balance: DOUBLE
      flagged: BOOLEAN
  retail_customers:
    owner: retailer
    columns:
      customer_id: VARCHAR
      segment: VARCHAR
      spend: DOUBLE
      since: DATE
analytics:
  members: [analytics]
  attestation:
%s
recipients:
%s
templates:
  spend_by_segment:
    tables: [bank_customers, retail_customers]
    params:
      min_balance: {type: double, min: 0, max: 10000000}
    group_size: customers
    sql: |
      SELECT r.segment, COUNT(*) AS customers, ROUND(AVG(r.spend), 2) AS avg_spend,
             ROUND(AVG(b.balance), 2) AS avg_balance
      FROM bank_customers b JOIN retail_customers r ON b.customer_id = r.customer_id
      WHERE b.balance >= $min_balance
      GROUP BY r.segment ORDER BY r.segment
  noisy_spend_by_segment:
    tables: [bank_customers, retail_customers]
    params:
      since: {type: date}
    group_size: customers
    noise:
      epsilon: 1
      columns:
        customers: {kind: count}
        total_spend: {kind: sum, bound: 5000}
    sql: |
      SELECT r.segment, COUNT(*) AS customers,
             SUM(LEAST(GREATEST(r.spend, 0), 5000)) AS total_spend
      FROM bank_customers b JOIN retail_customers r ON b.customer_id = r.customer_id
      WHERE r.since >= $since
      GROUP BY r.segment ORDER BY r.segment
  flagged_shoppers:
    tables: [bank_customers, retail_customers]
    params:
      segment: {type: string, enum: [budget, family, premium, student]}
    group_size: customers
    sql: |
      SELECT r.segment, COUNT(*) AS customers, ROUND(SUM(r.spend), 2) AS spend
      FROM bank_customers b JOIN retail_customers r ON b.customer_id = r.customer_id
      WHERE b.flagged AND r.segment = $segment
      GROUP BY r.segment
  segment_model:
    tables: [bank_customers, retail_customers]
    train: {model: gbdt, label: segment, task: classification, trees: 30, num_leaves: 8, min_leaf: 12}
    sql: |
      SELECT b.balance, r.spend, r.segment
      FROM bank_customers b JOIN retail_customers r ON b.customer_id = r.customer_id
`, o.MinGroupSize, o.BankEpsilon, o.RetailEpsilon, indent(o.Attestation, "    "), rec.String())
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "\n")
}
