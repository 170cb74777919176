//go:build !linux

package node

import "context"

// netChanges is not watched on this platform: the periodic rediscovery
// notices network changes.
func netChanges(context.Context) <-chan struct{} { return nil }
