package wg

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// recorder is a state whose changes are recorded, and fail on demand.
type recorder struct {
	state
	nif     *fakeNetif
	applied []wgtypes.Config
	fail    bool
}

func newRecorder() *recorder {
	r := &recorder{nif: &fakeNetif{}}
	r.state = state{netif: r.nif, apply: func(d wgtypes.Config) error {
		r.applied = append(r.applied, d)
		if r.fail {
			return errFake
		}
		return nil
	}}
	return r
}

// TestSetTwice checks that Set with the same Config twice sends nothing
// the second time, neither to WireGuard nor to the interface, even if the
// caller changed its slices in between.
func TestSetTwice(t *testing.T) {
	r := newRecorder()
	cfg := clone(base)
	if err := r.set(cfg); err != nil {
		t.Fatal(err)
	}
	if len(r.applied) != 1 || len(r.nif.took()) != 1 {
		t.Fatalf("first Set applied %v; want one change and one address", r.applied)
	}
	again := clone(base)
	cfg.Peers[0].AllowedIPs[0] = netip.MustParsePrefix("0.0.0.0/0") // caller reuses its slices
	if err := r.set(again); err != nil {
		t.Fatal(err)
	}
	if len(r.applied) != 1 {
		t.Errorf("second Set applied %+v, want nothing", r.applied[1:])
	}
	if calls := r.nif.took(); len(calls) != 0 {
		t.Errorf("second Set did %v to the interface, want nothing", calls)
	}
}

func TestSetAddress(t *testing.T) {
	r := newRecorder()
	steps := []struct {
		addr    string
		addrErr error
		want    []string
	}{
		{"10.99.0.1/16", nil, []string{"address invalid Prefix -> 10.99.0.1/16"}},
		{"10.99.0.1/16", nil, nil},
		{"10.99.0.7/16", errFake, []string{"address 10.99.0.1/16 -> 10.99.0.7/16"}},
		{"10.99.0.7/16", nil, []string{"address 10.99.0.1/16 -> 10.99.0.7/16"}}, // tried again
		{"10.99.0.7/16", nil, nil},
		{"", nil, []string{"address 10.99.0.7/16 -> invalid Prefix"}},
	}
	for i, s := range steps {
		cfg := clone(base)
		cfg.Address, _ = netip.ParsePrefix(s.addr)
		r.nif.addrErr = s.addrErr
		if err := r.set(cfg); (err != nil) != (s.addrErr != nil) {
			t.Errorf("step %d: Set error = %v, want %v", i, err, s.addrErr)
		}
		if d := cmp.Diff(s.want, r.nif.took()); d != "" {
			t.Errorf("step %d (%s): interface calls (-want +got):\n%s", i, s.addr, d)
		}
	}
}

// TestSetAfterFailure checks that after a change fails part way, the next
// Set sends the whole desired state again and removes every peer that
// might have been left behind.
func TestSetAfterFailure(t *testing.T) {
	r := newRecorder()
	if err := r.set(base); err != nil {
		t.Fatal(err)
	}
	r.fail = true
	failing := with(func(c *Config) { c.Peers = append(c.Peers, Peer{PublicKey: key(7)}) })
	if err := r.set(failing); err == nil {
		t.Fatal("Set succeeded although applying failed")
	}
	r.fail = false
	want := with(func(c *Config) { c.Peers = c.Peers[1:] })
	if err := r.set(want); err != nil {
		t.Fatal(err)
	}
	got := r.applied[len(r.applied)-1]
	wantDiff := wgtypes.Config{
		PrivateKey: ptr(key(1)),
		ListenPort: ptr(51820),
		Peers:      []wgtypes.PeerConfig{{PublicKey: key(2), Remove: true}, {PublicKey: key(7), Remove: true}, sendC},
	}
	if d := cmp.Diff(wantDiff, got, cmp.Comparer(sameIPNet)); d != "" {
		t.Errorf("Set after a failure sent (-want +got):\n%s", d)
	}
}

func TestSetRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"peer without key", Config{Peers: []Peer{{}}}},
		{"peer twice", Config{Peers: []Peer{peerB, peerB}}},
		{"invalid allowed IP", Config{Peers: []Peer{{PublicKey: key(2), AllowedIPs: []netip.Prefix{{}}}}}},
		{"port out of range", Config{ListenPort: 70000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecorder()
			if err := r.set(tt.cfg); err == nil {
				t.Error("Set accepted it")
			}
			if len(r.applied) != 0 {
				t.Errorf("Set applied %+v", r.applied)
			}
		})
	}
}
