package wg

import (
	"errors"
	"fmt"
)

// errNoKernel marks a failure to create a kernel WireGuard interface
// because the system has none, after which KindAuto falls back to
// userspace.
var errNoKernel = errors.New("kernel WireGuard is not available")

// New creates the interface and returns its engine, listening on
// Options.ListenPort (or a free port) with no key and no peers until Set.
//
// On Linux the interface lives in the network namespace of the calling OS
// thread, and so does everything the engine opens later (wireguard-go's
// UDP sockets when it rebinds, a kernel engine's STUN socket), whichever
// goroutine calls its methods. A process started inside its namespace
// (ip netns exec) needs nothing more; to create an engine in another
// namespace, lock the OS thread, netns.Set it there, call New, and set it
// back.
func New(opts Options) (Engine, error) {
	opts = opts.withDefaults()
	switch opts.Kind {
	case KindUserspace:
		return nonNil(newUserspace(opts))
	case KindKernel:
		return nonNil(newKernel(opts))
	case KindAuto:
		e, err := newKernel(opts)
		if errors.Is(err, errNoKernel) {
			opts.Logger.Debug("no kernel WireGuard; using the userspace engine", "reason", err)
			return nonNil(newUserspace(opts))
		}
		return nonNil(e, err)
	}
	return nil, fmt.Errorf("wg: unknown engine kind %q: want %q, %q or %q", opts.Kind, KindAuto, KindKernel, KindUserspace)
}

// nonNil keeps a nil *T from becoming a non-nil Engine.
func nonNil[T Engine](e T, err error) (Engine, error) {
	if err != nil {
		return nil, err
	}
	return e, nil
}
