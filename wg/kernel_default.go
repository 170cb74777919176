//go:build !linux

package wg

import "fmt"

// newKernel fails: kernel WireGuard is Linux's.
func newKernel(Options) (Engine, error) {
	return nil, fmt.Errorf("wg: %w on this system (it is Linux's); use the userspace engine", errNoKernel)
}
