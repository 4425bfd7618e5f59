package kms

import "github.com/teeml/teeml/sealed/kmskeys"

// KeySource returns the broker as a sealed.KeySource over this client's
// RA-TLS connection: sealed files and encrypted Parquet get their data keys
// from the broker, released only if this client satisfies each key's release
// policy. It is valid until c is closed.
func (c *Client) KeySource() *kmskeys.Source {
	return kmskeys.New(c.KeyBrokerClient, c.conn.Target())
}
