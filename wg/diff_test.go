package wg

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// key returns a distinct, fixed key for tests.
func key(b byte) Key { return Key{0: b, 31: 0x40} }

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// ipnet parses s independently of the code under test.
func ipnet(s string) net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return *n
}

func udpAddr(s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		panic(err)
	}
	if ip4 := a.IP.To4(); ip4 != nil {
		a.IP = ip4
	}
	return a
}

func ptr[T any](v T) *T { return &v }

var (
	peerB = Peer{
		PublicKey:  key(2),
		Endpoint:   netip.MustParseAddrPort("198.51.100.2:51820"),
		AllowedIPs: prefixes("10.99.0.2/32"),
	}
	peerC = Peer{
		PublicKey:  key(3),
		AllowedIPs: prefixes("10.99.0.3/32", "fd00::3/128"),
	}
	base = Config{
		PrivateKey: key(1),
		ListenPort: 51820,
		Address:    netip.MustParsePrefix("10.99.0.1/16"),
		Peers:      []Peer{peerB, peerC},
	}
	// sendB and sendC are how peerB and peerC are sent when new.
	sendB = wgtypes.PeerConfig{
		PublicKey:                   key(2),
		Endpoint:                    udpAddr("198.51.100.2:51820"),
		PersistentKeepaliveInterval: ptr(25 * time.Second),
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  []net.IPNet{ipnet("10.99.0.2/32")},
	}
	sendC = wgtypes.PeerConfig{
		PublicKey:                   key(3),
		PersistentKeepaliveInterval: ptr(25 * time.Second),
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  []net.IPNet{ipnet("10.99.0.3/32"), ipnet("fd00::3/128")},
	}
)

// with returns base changed by edit, leaving base alone.
func with(edit func(c *Config)) Config {
	c := clone(base)
	edit(&c)
	return c
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name       string
		have, want Config
		diff       wgtypes.Config
	}{
		{
			name: "first config",
			have: Config{},
			want: base,
			diff: wgtypes.Config{PrivateKey: ptr(key(1)), ListenPort: ptr(51820), Peers: []wgtypes.PeerConfig{sendB, sendC}},
		},
		{name: "unchanged", have: base, want: clone(base)},
		{
			name: "allowed IPs in another order",
			have: base,
			want: with(func(c *Config) { c.Peers[1].AllowedIPs = prefixes("fd00::3/128", "10.99.0.3/32") }),
		},
		{
			name: "allowed IP written unmasked",
			have: base,
			want: with(func(c *Config) { c.Peers[1].AllowedIPs = prefixes("10.99.0.3/32", "fd00::3/128", "fd00::3/128") }),
		},
		{
			name: "new peer",
			have: base,
			want: with(func(c *Config) {
				c.Peers = append(c.Peers, Peer{PublicKey: key(4), Endpoint: netip.MustParseAddrPort("[2001:db8::4]:4444"), AllowedIPs: prefixes("10.99.0.4/32")})
			}),
			diff: wgtypes.Config{Peers: []wgtypes.PeerConfig{{
				PublicKey:                   key(4),
				Endpoint:                    udpAddr("[2001:db8::4]:4444"),
				PersistentKeepaliveInterval: ptr(25 * time.Second),
				ReplaceAllowedIPs:           true,
				AllowedIPs:                  []net.IPNet{ipnet("10.99.0.4/32")},
			}}},
		},
		{
			name: "removed peer",
			have: base,
			want: with(func(c *Config) { c.Peers = c.Peers[1:] }),
			diff: wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: key(2), Remove: true}}},
		},
		{
			name: "all peers removed",
			have: base,
			want: with(func(c *Config) { c.Peers = nil }),
			diff: wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: key(2), Remove: true}, {PublicKey: key(3), Remove: true}}},
		},
		{
			name: "endpoint change",
			have: base,
			want: with(func(c *Config) { c.Peers[0].Endpoint = netip.MustParseAddrPort("203.0.113.9:4500") }),
			diff: wgtypes.Config{Peers: []wgtypes.PeerConfig{func() wgtypes.PeerConfig {
				p := sendB
				p.Endpoint = udpAddr("203.0.113.9:4500")
				return p
			}()}},
		},
		{
			name: "endpoint given as IPv4-mapped IPv6",
			have: base,
			want: with(func(c *Config) { c.Peers[0].Endpoint = netip.MustParseAddrPort("[::ffff:203.0.113.9]:4500") }),
			diff: wgtypes.Config{Peers: []wgtypes.PeerConfig{func() wgtypes.PeerConfig {
				p := sendB
				p.Endpoint = udpAddr("203.0.113.9:4500")
				return p
			}()}},
		},
		{
			name: "endpoint forgotten: left to roaming",
			have: base,
			want: with(func(c *Config) { c.Peers[0].Endpoint = netip.AddrPort{} }),
		},
		{
			name: "endpoint without port: left to roaming",
			have: base,
			want: with(func(c *Config) { c.Peers[0].Endpoint = netip.MustParseAddrPort("203.0.113.9:0") }),
		},
		{
			name: "endpoint unspecified: left to roaming",
			have: base,
			want: with(func(c *Config) { c.Peers[0].Endpoint = netip.MustParseAddrPort("0.0.0.0:4500") }),
		},
		{
			name: "allowed IP change keeps the endpoint out",
			have: base,
			want: with(func(c *Config) { c.Peers[0].AllowedIPs = prefixes("10.99.0.2/32", "192.168.7.0/24") }),
			diff: wgtypes.Config{Peers: []wgtypes.PeerConfig{func() wgtypes.PeerConfig {
				p := sendB
				p.Endpoint = nil
				p.AllowedIPs = []net.IPNet{ipnet("10.99.0.2/32"), ipnet("192.168.7.0/24")}
				return p
			}()}},
		},
		{
			name: "private key change",
			have: base,
			want: with(func(c *Config) { c.PrivateKey = key(9) }),
			diff: wgtypes.Config{PrivateKey: ptr(key(9))},
		},
		{
			name: "listen port change",
			have: base,
			want: with(func(c *Config) { c.ListenPort = 4242 }),
			diff: wgtypes.Config{ListenPort: ptr(4242)},
		},
		{name: "zero listen port keeps the port", have: base, want: with(func(c *Config) { c.ListenPort = 0 })},
		{name: "address change is not WireGuard's", have: base, want: with(func(c *Config) { c.Address = netip.MustParsePrefix("10.99.0.7/16") })},
		{
			name: "peer replaced by another",
			have: base,
			want: with(func(c *Config) { c.Peers = []Peer{peerC, {PublicKey: key(5)}} }),
			diff: wgtypes.Config{Peers: []wgtypes.PeerConfig{
				{PublicKey: key(2), Remove: true},
				{PublicKey: key(5), PersistentKeepaliveInterval: ptr(25 * time.Second), ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diff(tt.have, tt.want)
			if d := cmp.Diff(tt.diff, got, cmp.Comparer(sameIPNet)); d != "" {
				t.Errorf("diff (-want +got):\n%s", d)
			}
			if isEmpty(got) != isEmpty(tt.diff) {
				t.Errorf("isEmpty = %v, want %v", isEmpty(got), isEmpty(tt.diff))
			}
		})
	}
}

func sameIPNet(a, b net.IPNet) bool { return a.String() == b.String() }

// TestDiffTwice checks that a Config, once applied, has nothing left to
// apply, whatever it is.
func TestDiffTwice(t *testing.T) {
	configs := []Config{{}, base, with(func(c *Config) { c.Peers = nil }), with(func(c *Config) { c.Peers[0].Endpoint = netip.AddrPort{} })}
	for _, c := range configs {
		if d := diff(c, clone(c)); !isEmpty(d) {
			t.Errorf("diff of %+v with itself = %+v, want empty", c, d)
		}
	}
}
