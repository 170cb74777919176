package wgtest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/wire-mesh/wire/filter"
	"github.com/wire-mesh/wire/wg"
)

var netipComparable = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})

func TestRecordsConfigs(t *testing.T) {
	e := New("wire0")
	cfg := wg.Config{ListenPort: 4242, Peers: []wg.Peer{{PublicKey: wg.Key{1}, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}}
	if err := e.Set(cfg); err != nil {
		t.Fatal(err)
	}
	want := []wg.Config{{ListenPort: 4242, Peers: []wg.Peer{{PublicKey: wg.Key{1}, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}}}
	cfg.Peers[0].AllowedIPs[0] = netip.MustParsePrefix("0.0.0.0/0") // the caller's slices are its own
	if d := cmp.Diff(want, e.Configs(), netipComparable); d != "" {
		t.Errorf("Configs (-want +got):\n%s", d)
	}
	if e.Port() != 4242 {
		t.Errorf("Port = %d after setting 4242", e.Port())
	}
	e.FailSet(errors.New("boom"))
	if err := e.Set(wg.Config{}); err == nil || len(e.Configs()) != 1 {
		t.Errorf("failing Set = %v and recorded %d configs; want an error and 1", err, len(e.Configs()))
	}
}

func TestWait(t *testing.T) {
	e := New("wire0")
	go func() {
		for port := 1; port <= 3; port++ {
			time.Sleep(10 * time.Millisecond)
			e.Set(wg.Config{ListenPort: port})
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := e.Wait(ctx, func(c wg.Config) bool { return c.ListenPort == 3 })
	if err != nil || got.ListenPort != 3 {
		t.Errorf("Wait = %+v, %v; want port 3", got, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := e.Wait(short, func(c wg.Config) bool { return c.ListenPort == 9 }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait for what never comes = %v, want %v", err, context.DeadlineExceeded)
	}
}

func TestDiscover(t *testing.T) {
	e := New("wire0")
	server := netip.MustParseAddrPort("192.0.2.1:3478")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := e.Discover(ctx, server); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Discover with nothing set = %v, want %v", err, context.DeadlineExceeded)
	}
	want := netip.MustParseAddrPort("203.0.113.5:51820")
	e.SetDiscover(want, nil)
	if got, err := e.Discover(context.Background(), server); err != nil || got != want {
		t.Errorf("Discover = %v, %v; want %v", got, err, want)
	}
	if d := cmp.Diff([]netip.AddrPort{server, server}, e.Queried(), netipComparable); d != "" {
		t.Errorf("Queried (-want +got):\n%s", d)
	}
}

func TestPeersAndClose(t *testing.T) {
	e := New("wire0")
	want := []wg.PeerStatus{{PublicKey: wg.Key{2}, RxBytes: 7}}
	e.SetPeers(want)
	if got, err := e.Peers(); err != nil || !cmp.Equal(want, got, netipComparable) {
		t.Errorf("Peers = %+v, %v; want %+v", got, err, want)
	}
	e.Close()
	if !e.Closed() {
		t.Error("Closed = false after Close")
	}
	if err := e.Set(wg.Config{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Set after Close = %v, want %v", err, net.ErrClosed)
	}
}

// TestRecordsFilter checks that a recorded Config keeps its filter as it
// was, when the caller changes its map afterwards.
func TestRecordsFilter(t *testing.T) {
	e := New("wire0")
	admin := netip.MustParseAddr("10.99.0.2")
	rules := filter.Rules{admin: {{Proto: filter.TCP, Ports: filter.PortRange{First: 22, Last: 22}}}}
	if err := e.Set(wg.Config{Filter: rules}); err != nil {
		t.Fatal(err)
	}
	rules[admin][0].Ports.Last = 23
	last, _ := e.Last()
	if got := last.Filter[admin][0].Ports.Last; got != 22 {
		t.Errorf("the recorded filter changed with the caller's map: port %d", got)
	}
}
