//go:build race

package strategy

// raceEnabled makes the heavier tests use smaller inputs under the race
// detector, which slows the element loops ~50x; they still span several
// spans and run several workers.
const raceEnabled = true
