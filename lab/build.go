//go:build linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildWire builds the wire binary from the repository root root into dir,
// static, as the release does, and returns its path.
func BuildWire(dir, root string) (string, error) {
	bin := filepath.Join(dir, "wire")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building wire: %v\n%s", err, out)
	}
	return bin, nil
}
