package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
)

func TestParseSubnet(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"10.99", "10.99.0.0/16"},
		{"10.99.7", "10.99.7.0/24"},
		{"100.64.0.0/10", "100.64.0.0/10"},
		{"10", "10.0.0.0/8"},
		{"10.99.0.1/16", ""},
		{"fd00::/64", ""},
		{"10.99.0.0/31", ""},
		{"10.1.2.3.4", ""},
		{"ten", ""},
	}
	for _, tt := range tests {
		p, err := ParseSubnet(tt.in)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != tt.want {
			t.Errorf("ParseSubnet(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestAllocatorSmallSubnet(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.99.7.0/29")) // 6 host addresses
	seen := map[netip.Addr]bool{}
	for i := range 6 {
		addr, err := a.allocate(fmt.Sprintf("n%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] || addr == netip.MustParseAddr("10.99.7.0") || addr == netip.MustParseAddr("10.99.7.7") {
			t.Fatalf("allocated %s twice or a network/broadcast address", addr)
		}
		seen[addr] = true
	}
	start := time.Now()
	if _, err := a.allocate("n7"); !errors.Is(err, ErrSubnetFull) || time.Since(start) > 10*time.Millisecond {
		t.Fatalf("full subnet: err = %v after %v, want ErrSubnetFull at once", err, time.Since(start))
	}
}

// TestTenThousandNodes enrols 10,000 nodes in one /16 through the registry
// and its store, restarts, and checks that every address is unique, a host
// address, and unchanged.
func TestTenThousandNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 enrolments; run without -short")
	}
	dir := t.TempDir()
	prefix := netip.MustParsePrefix("10.99.0.0/16")
	store, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(store, prefix, time.Now, nil)
	wg := make([]byte, 32)
	got := map[string]string{}
	owner := map[string]string{}
	for i := range 10000 {
		id := fmt.Sprintf("%032x", uint64(i)*0x9e3779b97f4a7c15) // spread like sha256 prefixes, with collisions
		if i%10 == 0 {
			id = fmt.Sprintf("%04x%028x", 0xa1b2, i) // same preferred address: forces probing
		}
		wg[0], wg[1] = byte(i), byte(i>>8)
		req := api.RegisterRequest{NodeID: id, NodeName: fmt.Sprintf("n%d", i), WGPublicKey: fmt.Sprintf("%x", wg), Port: 51820}
		rec, err := reg.register(context.Background(), enrolment{req: req})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		addr := netip.MustParseAddr(rec.VPNIP)
		if !reg.alloc.usable(addr) {
			t.Fatalf("node %d got %s: not a host address of %s", i, addr, prefix)
		}
		if prev, dup := owner[rec.VPNIP]; dup {
			t.Fatalf("%s given to %s and %s", rec.VPNIP, prev, id)
		}
		owner[rec.VPNIP] = id
		got[id] = rec.VPNIP
	}
	store.Close()

	store, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	recs, err := store.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reg = newRegistry(store, prefix, time.Now, nil)
	if err := reg.load(recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(got) {
		t.Fatalf("after restart: %d nodes, want %d", len(recs), len(got))
	}
	for _, r := range recs {
		if got[r.NodeID] != r.VPNIP {
			t.Fatalf("node %s: %s before restart, %s after", r.NodeID, got[r.NodeID], r.VPNIP)
		}
	}
}

func TestPreferredIsSeedAddress(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.99.0.0/16"))
	addr, _ := a.allocate("17bb0c5e9a2f4d3c8b7a6f5e4d3c2b1a")
	if addr.String() != "10.99.23.187" {
		t.Errorf("preferred address = %s, want 10.99.23.187 (0x17, 0xbb)", addr)
	}
	// Its collision goes to the next free address, deterministically.
	next, _ := a.allocate("17bb0000000000000000000000000000")
	if next.String() != "10.99.23.188" {
		t.Errorf("colliding node got %s, want 10.99.23.188", next)
	}
}

func TestParseDNSDomain(t *testing.T) {
	for in, want := range map[string]string{"wire": "wire", "Mesh.Example.COM.": "mesh.example.com", "a-1.b": "a-1.b"} {
		if got, err := ParseDNSDomain(in); err != nil || got != want {
			t.Errorf("ParseDNSDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "-wire", "wire-", "a..b", "wi re", "x_y", strings.Repeat("a", 64)} {
		if got, err := ParseDNSDomain(bad); err == nil {
			t.Errorf("ParseDNSDomain(%q) = %q; want an error", bad, got)
		}
	}
}
