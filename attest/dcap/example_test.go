package dcap_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/teeml/teeml/attest"
	"github.com/teeml/teeml/attest/dcap"
	"github.com/teeml/teeml/attest/dcap/collateral"
	"github.com/teeml/teeml/attest/pcs"
)

// Verifying a quote with the collateral shipped alongside it.
func ExampleVerifier_Verify() {
	quote, _ := os.ReadFile("quote.bin")
	colJSON, _ := os.ReadFile("collateral.json")
	v, err := dcap.New(attest.SGX, nil) // pinned Intel SGX Root CA
	if err != nil {
		panic(err)
	}
	claims, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.SGX, Quote: quote, Collateral: colJSON}, time.Now())
	if err != nil {
		fmt.Println(err) // e.g. dcap: verify: step "pck crl": collateral expired: ...
		return
	}
	fmt.Printf("MRENCLAVE %x TCB %s %v\n", claims.MREnclave, claims.TCBStatus, claims.AdvisoryIDs)
}

// Verifying quotes whose collateral comes from a local cache filled from
// Intel's PCS on demand.
func ExampleOptions_source() {
	cache, err := collateral.NewCache("/var/cache/teeml/dcap")
	if err != nil {
		panic(err)
	}
	client := &pcs.Client{Cache: cache} // https://api.trustedservices.intel.com
	v, err := dcap.New(attest.TDX, &dcap.Options{Source: client})
	if err != nil {
		panic(err)
	}
	quote, _ := os.ReadFile("tdquote.bin")
	claims, err := v.Verify(context.Background(), &attest.Evidence{TEE: attest.TDX, Quote: quote}, time.Now())
	if err == nil {
		fmt.Printf("MRTD %x\n", claims.MRTD)
	}
}
