package sim

// Simulation is announced with these texts, and only these: every
// "SIMULATION" string of teeml is built here, so a reader (or a log
// search) finds every place simulation is in use by one word.
const (
	// Prefix starts every simulation notice.
	Prefix = "SIMULATION"
	// Banner is printed (stdout) and logged (WARN) once by every party
	// whose evidence is simulated, that trusts simulated evidence, or that
	// keeps keys in plain files; demos write it at the top of every file
	// they generate.
	Banner = Prefix + ": no TEE hardware; simulated attestation evidence and plain-file keys prove and protect nothing; never use this for real data"
)

// Notice is a one-line simulation notice about what, e.g.
// Notice("data keys come from a local key file").
func Notice(what string) string { return Prefix + ": " + what }
