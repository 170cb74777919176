//go:build race

package relay

// raceEnabled: sync.Pool drops items at random under the race detector.
const raceEnabled = true
