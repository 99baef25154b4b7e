//go:build race

package integration_test

// raceEnabled reports whether the tests run with the race detector, so that
// what they build to run (the mire command) is built with it too.
const raceEnabled = true
