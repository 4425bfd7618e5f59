package kms

import (
	"github.com/teeml/teeml/kms/rootkey"
)

// OpenRootKey opens the root key holder named by spec, one of package
// rootkey's: file:PATH (a local key file: SIMULATION, announced as such),
// gramine:[mrenclave|mrsigner] (Gramine's SGX sealing key) or pkcs11:URI (an
// AES key inside an HSM token). A missing key is never created here — `teeml
// kms rootkey init` or `teeml kms setup-sim` creates it — so a mistyped path
// cannot start a broker with a fresh root key that unwraps nothing.
func OpenRootKey(spec string) (rootkey.Wrapper, error) { return rootkey.Open(spec) }
