//go:build race

package ml

// raceEnabled: the slow accuracy tests on the bundled datasets are skipped
// under the race detector (see skipUnderRace).
const raceEnabled = true
