//go:build !unix

package node

import "syscall"

func detached() *syscall.SysProcAttr { return nil }
