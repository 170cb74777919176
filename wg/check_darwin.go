package wg

import "errors"

func checkKernel() error {
	return errors.New("kernel WireGuard is Linux's: use --engine userspace (or auto)")
}

// checkUserspace has nothing to check: every macOS has utun, for root.
func checkUserspace() error { return nil }
