package wg

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// fakeNetif records what an engine asks of the operating system.
type fakeNetif struct {
	mu      sync.Mutex
	calls   []string
	addrErr error // returned by setAddress, if set
}

var _ netif = (*fakeNetif)(nil)

func (f *fakeNetif) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeNetif) setAddress(have, want netip.Prefix) error {
	f.record("address %v -> %v", have, want)
	return f.addrErr
}

func (f *fakeNetif) up() error     { f.record("up"); return nil }
func (f *fakeNetif) remove() error { f.record("remove"); return nil }

// took returns the calls so far and forgets them.
func (f *fakeNetif) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

var errFake = errors.New("fake failure")
