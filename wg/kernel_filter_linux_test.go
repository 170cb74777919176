package wg

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/wire-mesh/wire/filter"
)

// fakeFirewall records the filters a kernel engine enforces.
type fakeFirewall struct {
	enforced []filter.Rules
	fail     error
	closed   int
}

func (f *fakeFirewall) set(r filter.Rules) error {
	f.enforced = append(f.enforced, r)
	return f.fail
}

func (f *fakeFirewall) close() error { f.closed++; return nil }

func newFilteredFakeKernel(t *testing.T, port int) (*kernel, *fakeClient, *fakeNetif, *fakeFirewall) {
	t.Helper()
	client, nif, fw := &fakeClient{t: t}, &fakeNetif{}, &fakeFirewall{}
	e, err := startKernel(nif, client, fw, namespace{}, Options{Name: "wire0", ListenPort: port}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, client, nif, fw
}

// TestKernelFilter checks that the kernel engine hands Config.Filter to
// its firewall, that a firewall that fails leaves the interface alone
// (down, before the first Set), and that Close removes the filter.
func TestKernelFilter(t *testing.T) {
	e, client, nif, fw := newFilteredFakeKernel(t, 51820)
	cfg := clone(base)
	cfg.Filter = filter.Rules{netip.MustParseAddr("10.99.0.2"): {{Proto: filter.ICMP}}}
	fw.fail = errFake
	if err := e.Set(cfg); !errors.Is(err, errFake) {
		t.Fatalf("Set with a failing firewall = %v, want %v", err, errFake)
	}
	if len(client.configured) != 0 || len(nif.took()) != 0 {
		t.Errorf("a failed filter let Set configure %+v", client.configured)
	}
	fw.fail = nil
	if err := e.Set(cfg); err != nil {
		t.Fatal(err)
	}
	if len(fw.enforced) != 2 || len(fw.enforced[1]) != 1 || len(client.configured) != 1 {
		t.Errorf("firewall given %v and wgctrl %d changes; want the rules twice and one change", fw.enforced, len(client.configured))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if fw.closed != 1 {
		t.Errorf("Close closed the firewall %d times, want once", fw.closed)
	}
}
