package wg

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// A Patch sends what changed among the peers it names, and leaves the
// state where Set with the whole Config so changed would: that Set then
// sends nothing.
func TestPatch(t *testing.T) {
	r := newRecorder()
	if err := r.patch(Patch{Peers: []Peer{peerB}}); err == nil {
		t.Fatal("Patch before the first Set worked")
	}
	if err := r.set(clone(base)); err != nil {
		t.Fatal(err)
	}
	movedB := peerB
	movedB.Endpoint = netip.MustParseAddrPort("198.51.100.9:4000")
	peerD := Peer{PublicKey: key(4), AllowedIPs: prefixes("10.99.0.4/32")}
	steps := []struct {
		name  string
		patch Patch
		sent  []wgtypes.PeerConfig // nil: nothing sent
	}{
		{"unchanged", Patch{Peers: []Peer{peerC}}, nil},
		{"a peer moved", Patch{Peers: []Peer{movedB}}, []wgtypes.PeerConfig{{
			PublicKey: key(2), Endpoint: udpAddr("198.51.100.9:4000"), PersistentKeepaliveInterval: ptr(Keepalive),
			ReplaceAllowedIPs: true, AllowedIPs: sendB.AllowedIPs,
		}}},
		{"one added, one removed", Patch{Peers: []Peer{peerD}, Remove: []Key{key(3)}}, []wgtypes.PeerConfig{
			{PublicKey: key(3), Remove: true},
			{PublicKey: key(4), PersistentKeepaliveInterval: ptr(Keepalive), ReplaceAllowedIPs: true, AllowedIPs: sendC.AllowedIPs[:0:0]},
		}},
		{"removing a peer that is not there", Patch{Remove: []Key{key(9)}}, nil},
	}
	steps[2].sent[1].AllowedIPs = append(steps[2].sent[1].AllowedIPs, ipnet("10.99.0.4/32"))
	for _, st := range steps {
		before := len(r.applied)
		if err := r.patch(st.patch); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var sent []wgtypes.PeerConfig
		if len(r.applied) > before {
			sent = r.applied[before].Peers
		}
		if diff := cmp.Diff(st.sent, sent); diff != "" {
			t.Errorf("%s: sent (-want +got):\n%s", st.name, diff)
		}
	}
	whole := clone(base)
	whole.Peers = []Peer{movedB, peerD}
	before := len(r.applied)
	if err := r.set(whole); err != nil {
		t.Fatal(err)
	}
	if len(r.applied) != before {
		t.Errorf("Set of the patched Config sent %+v, want nothing", r.applied[before:])
	}
}

// A Patch that names a peer twice, or has an invalid one, is refused
// before anything is sent.
func TestPatchRefusesBadInput(t *testing.T) {
	r := newRecorder()
	if err := r.set(clone(base)); err != nil {
		t.Fatal(err)
	}
	bad := peerB
	bad.AllowedIPs = []netip.Prefix{{}}
	for name, p := range map[string]Patch{
		"twice":            {Peers: []Peer{peerB, peerB}},
		"patched and gone": {Peers: []Peer{peerB}, Remove: []Key{peerB.PublicKey}},
		"no key":           {Peers: []Peer{{AllowedIPs: prefixes("10.99.0.7/32")}}},
		"invalid prefix":   {Peers: []Peer{bad}},
	} {
		before := len(r.applied)
		if err := r.patch(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if len(r.applied) != before {
			t.Errorf("%s: sent %+v", name, r.applied[before:])
		}
	}
}

// After a Patch fails part way, what it named is in an unknown state:
// the next Set sends those peers in full again.
func TestPatchFailureForgets(t *testing.T) {
	r := newRecorder()
	if err := r.set(clone(base)); err != nil {
		t.Fatal(err)
	}
	moved := peerC
	moved.Endpoint = netip.MustParseAddrPort("198.51.100.3:5000")
	r.fail = true
	if err := r.patch(Patch{Peers: []Peer{moved}}); err == nil {
		t.Fatal("the Patch did not fail")
	}
	r.fail = false
	before := len(r.applied)
	if err := r.set(clone(base)); err != nil {
		t.Fatal(err)
	}
	if len(r.applied) != before+1 || len(r.applied[before].Peers) != 2 {
		t.Errorf("Set after the failure sent %+v, want both peers in full", r.applied[before:])
	}
}

// One peer's change in a mesh of N peers, through Set with the whole
// Config and through Patch (go test -bench OnePeer ./wg).
func BenchmarkOnePeer(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		cfg := clone(base)
		cfg.Peers = nil
		for i := range n {
			k := Key{0: byte(i), 1: byte(i >> 8), 31: 0x40}
			cfg.Peers = append(cfg.Peers, Peer{
				PublicKey: k, Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 51820),
				AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)}), 32)},
			})
		}
		for _, how := range []string{"Set", "Patch"} {
			b.Run(fmt.Sprintf("%s/peers=%d", how, n), func(b *testing.B) {
				r := newRecorder()
				if err := r.set(cfg); err != nil {
					b.Fatal(err)
				}
				for i := 0; b.Loop(); i++ {
					p := &cfg.Peers[i%n]
					p.Endpoint = netip.AddrPortFrom(p.Endpoint.Addr(), uint16(1024+i%60000))
					var err error
					if how == "Set" {
						err = r.set(cfg)
					} else {
						err = r.patch(Patch{Peers: []Peer{*p}})
					}
					if err != nil {
						b.Fatal(err)
					}
					r.applied = r.applied[:0]
				}
			})
		}
	}
}
