package wg

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// ipcText is d in wireguard-go's IPC (UAPI "set") form, the same change
// that wgctrl would make to a kernel interface.
func ipcText(d wgtypes.Config) string {
	var b strings.Builder
	if d.PrivateKey != nil {
		fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(d.PrivateKey[:]))
	}
	if d.ListenPort != nil {
		fmt.Fprintf(&b, "listen_port=%d\n", *d.ListenPort)
	}
	if d.FirewallMark != nil {
		fmt.Fprintf(&b, "fwmark=%d\n", *d.FirewallMark)
	}
	if d.ReplacePeers {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range d.Peers {
		writePeer(&b, p)
	}
	return b.String()
}

// writePeer writes p's lines; remove and update_only come first, as they
// decide what the lines after them apply to.
func writePeer(b *strings.Builder, p wgtypes.PeerConfig) {
	fmt.Fprintf(b, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
	if p.Remove {
		b.WriteString("remove=true\n")
		return
	}
	if p.UpdateOnly {
		b.WriteString("update_only=true\n")
	}
	if p.PresharedKey != nil {
		fmt.Fprintf(b, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
	}
	if p.Endpoint != nil {
		fmt.Fprintf(b, "endpoint=%s\n", unmap(p.Endpoint.AddrPort()))
	}
	if p.PersistentKeepaliveInterval != nil {
		fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
	}
	if p.ReplaceAllowedIPs {
		b.WriteString("replace_allowed_ips=true\n")
	}
	for _, ip := range p.AllowedIPs {
		fmt.Fprintf(b, "allowed_ip=%s\n", ip.String())
	}
}

// parsePeers reads the peers out of wireguard-go's IPC "get" text.
func parsePeers(text string) ([]PeerStatus, error) {
	var peers []PeerStatus
	for line := range strings.Lines(text) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		switch {
		case !ok:
			continue
		case key == "public_key":
			k, err := parseHexKey(value)
			if err != nil {
				return nil, fmt.Errorf("wg: IPC peer public_key: %w", err)
			}
			peers = append(peers, PeerStatus{PublicKey: k})
		case len(peers) > 0:
			if err := peerLine(&peers[len(peers)-1], key, value); err != nil {
				return nil, fmt.Errorf("wg: IPC peer %s: %w", key, err)
			}
		}
	}
	return peers, nil
}

// peerLine sets what the line key=value says of p. Lines that PeerStatus
// has nothing for are skipped.
func peerLine(p *PeerStatus, key, value string) error {
	var err error
	switch key {
	case "endpoint":
		p.Endpoint, err = netip.ParseAddrPort(value)
		p.Endpoint = unmap(p.Endpoint)
	case "last_handshake_time_sec":
		var sec int64
		if sec, err = strconv.ParseInt(value, 10, 64); sec != 0 {
			p.LastHandshake = time.Unix(sec, 0)
		}
	case "last_handshake_time_nsec":
		var nsec int64
		if nsec, err = strconv.ParseInt(value, 10, 64); !p.LastHandshake.IsZero() {
			p.LastHandshake = p.LastHandshake.Add(time.Duration(nsec))
		}
	case "rx_bytes":
		p.RxBytes, err = strconv.ParseInt(value, 10, 64)
	case "tx_bytes":
		p.TxBytes, err = strconv.ParseInt(value, 10, 64)
	}
	return err
}

func parseHexKey(s string) (Key, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return Key{}, err
	}
	return wgtypes.NewKey(b)
}
