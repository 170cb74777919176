package wg

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// hexKey is key(b) as IPC text writes it.
func hexKey(b byte) string {
	return strings.Replace("XX00000000000000000000000000000000000000000000000000000000000040", "XX", string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15]), 1)
}

func TestIPCText(t *testing.T) {
	tests := []struct {
		name string
		in   wgtypes.Config
		want []string
	}{
		{name: "nothing", in: wgtypes.Config{}, want: nil},
		{
			name: "device",
			in:   wgtypes.Config{PrivateKey: ptr(key(1)), ListenPort: ptr(51820), FirewallMark: ptr(0), ReplacePeers: true},
			want: []string{"private_key=" + hexKey(1), "listen_port=51820", "fwmark=0", "replace_peers=true"},
		},
		{
			name: "new peer",
			in:   wgtypes.Config{Peers: []wgtypes.PeerConfig{sendB}},
			want: []string{
				"public_key=" + hexKey(2),
				"endpoint=198.51.100.2:51820",
				"persistent_keepalive_interval=25",
				"replace_allowed_ips=true",
				"allowed_ip=10.99.0.2/32",
			},
		},
		{
			name: "removed peer",
			in:   wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: key(3), Remove: true, AllowedIPs: []net.IPNet{ipnet("10.0.0.0/8")}}}},
			want: []string{"public_key=" + hexKey(3), "remove=true"},
		},
		{
			name: "update only, IPv6, 16-byte IPv4",
			in: wgtypes.Config{Peers: []wgtypes.PeerConfig{{
				PublicKey:    key(4),
				UpdateOnly:   true,
				PresharedKey: ptr(key(0x5a)),
				Endpoint:     &net.UDPAddr{IP: net.ParseIP("2001:db8::4"), Port: 4444},
				AllowedIPs:   []net.IPNet{ipnet("fd00::/64"), {IP: net.ParseIP("10.1.0.0"), Mask: net.CIDRMask(16, 32)}},
			}, {
				PublicKey: key(5),
				Endpoint:  &net.UDPAddr{IP: net.ParseIP("203.0.113.5"), Port: 5}, // 16-byte form
			}}},
			want: []string{
				"public_key=" + hexKey(4),
				"update_only=true",
				"preshared_key=" + hexKey(0x5a),
				"endpoint=[2001:db8::4]:4444",
				"allowed_ip=fd00::/64",
				"allowed_ip=10.1.0.0/16",
				"public_key=" + hexKey(5),
				"endpoint=203.0.113.5:5",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Split(strings.TrimSuffix(ipcText(tt.in), "\n"), "\n")
			if len(got) == 1 && got[0] == "" {
				got = nil
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ipcText lines (-want +got):\n%s", d)
			}
		})
	}
}

// netipComparable lets cmp compare netip values, which hide their fields.
var netipComparable = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})

// ipcGet is what wireguard-go's IpcGet says of a device with two peers,
// one that has shaken hands and one that never has.
var ipcGet = `private_key=` + hexKey(1) + `
listen_port=51820
public_key=` + hexKey(2) + `
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
endpoint=[::ffff:198.51.100.2]:51820
last_handshake_time_sec=1700000000
last_handshake_time_nsec=250000000
tx_bytes=1234
rx_bytes=5678
persistent_keepalive_interval=25
allowed_ip=10.99.0.2/32
public_key=` + hexKey(3) + `
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=25
allowed_ip=10.99.0.3/32
errno=0

`

func TestParsePeers(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []PeerStatus
		wantErr bool
	}{
		{name: "no peers", in: "private_key=" + hexKey(1) + "\nlisten_port=1\n", want: nil},
		{name: "two peers", in: ipcGet, want: []PeerStatus{{
			PublicKey:     key(2),
			Endpoint:      netip.MustParseAddrPort("198.51.100.2:51820"),
			LastHandshake: time.Unix(1700000000, 250000000),
			TxBytes:       1234,
			RxBytes:       5678,
		}, {
			PublicKey: key(3),
		}}},
		{name: "bad key", in: "public_key=zz\n", wantErr: true},
		{name: "bad counter", in: "public_key=" + hexKey(2) + "\nrx_bytes=many\n", wantErr: true},
		{name: "bad endpoint", in: "public_key=" + hexKey(2) + "\nendpoint=nowhere\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePeers(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePeers error = %v, want error: %v", err, tt.wantErr)
			}
			if d := cmp.Diff(tt.want, got, netipComparable); d != "" {
				t.Errorf("parsePeers (-want +got):\n%s", d)
			}
		})
	}
}
