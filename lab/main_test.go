//go:build linux

package lab_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/wire-mesh/wire/lab"
)

// Environment of the lab's tests when they run inside the VM (see
// lab/vmlab): the wire binary to use, and the engine its
// nodes run.
const (
	binEnv    = "WIRE_LAB_BIN"
	engineEnv = "WIRE_LAB_ENGINE"
)

// wireBin is the real wire binary, built once by TestMain; buildErr says
// why there is none.
var (
	wireBin  string
	buildErr error
)

// TestMain runs a helper when the test binary is re-executed inside a
// namespace (see helperMain); otherwise it builds wire, if the lab can
// run here, and runs the tests.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain(os.Args[1:]))
	}
	if os.Getenv(childEnv) != "" {
		os.Exit(m.Run())
	}
	if err := lab.Check(); err != nil {
		// go test shows this line with -v, or when something fails: a
		// passing package's output is not shown otherwise.
		fmt.Fprintf(os.Stderr, "lab: SKIPPING every network lab test: %v\n", err)
		os.Exit(m.Run()) // each says why too (or fails under CI=true)
	}
	if bin := os.Getenv(binEnv); bin != "" { // in the VM: built on the host
		wireBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "wire-lab")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wireBin, buildErr = lab.BuildWire(dir, "..")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
