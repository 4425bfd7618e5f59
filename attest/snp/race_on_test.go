//go:build race

package snp

// raceEnabled shortens the exhaustive bit-flip sweep under the race
// detector, which makes each verification about ten times slower.
const raceEnabled = true
