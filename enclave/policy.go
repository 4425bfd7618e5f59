package enclave

// AllowedEnclave is one enclave identity a teeml attestation policy accepts:
// what `teeml enclave policy FILE.sig` prints. A quote matches when its
// MRENCLAVE, MRSIGNER and ISVPRODID are equal to these and its ISVSVN is at
// least MinISVSVN.
type AllowedEnclave struct {
	MREnclave Measurement `json:"mr_enclave" yaml:"mr_enclave"`
	MRSigner  Measurement `json:"mr_signer" yaml:"mr_signer"`
	ISVProdID uint16      `json:"isv_prod_id" yaml:"isv_prod_id"`
	MinISVSVN uint16      `json:"min_isv_svn" yaml:"min_isv_svn"`
}

// PolicyEntry returns the policy entry that admits the enclave described by
// info (from Sigstruct.Info), with MinISVSVN set to its ISVSVN. It carries
// no debug setting: a policy should refuse debug enclaves, and the caller
// should warn when info.Debug is set.
func PolicyEntry(info SigstructInfo) AllowedEnclave {
	return AllowedEnclave{
		MREnclave: info.MREnclave,
		MRSigner:  info.MRSigner,
		ISVProdID: info.ISVProdID,
		MinISVSVN: info.ISVSVN,
	}
}
