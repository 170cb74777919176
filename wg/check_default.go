//go:build !linux && !darwin

package wg

import "errors"

func checkKernel() error { return errors.New("kernel WireGuard is Linux's") }

func checkUserspace() error { return errors.New("the userspace engine runs on Linux and macOS only") }
