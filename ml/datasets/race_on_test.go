//go:build race

package datasets

// raceEnabled lets the tests that read the 70000-image IDX files do less
// under the race detector, which slows the byte-by-byte decoding ~20x. The
// loaders run no goroutines, so the full loads are left to the normal run.
const raceEnabled = true
