//go:build race

package plan_test

// raceEnabled skips the training tests under the race detector (the
// element loops are ~50x slower; the strategy package covers them there).
const raceEnabled = true
