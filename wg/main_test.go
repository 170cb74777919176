package wg

import (
	"os"
	"testing"
)

// TestMain turns quiet starts off: with them, what a Set sends and which
// end of a test's pair starts a handshake would depend on how the test's
// keys compare. They have tests of their own (quiet_test.go).
func TestMain(m *testing.M) {
	quietFor = 0
	os.Exit(m.Run())
}
