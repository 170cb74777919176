package wg

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/wire-mesh/wire/filter"
	"github.com/wire-mesh/wire/internal/roottest"
)

// How long a test waits before it calls a packet dropped, and for one
// that should pass.
const (
	dropWait = 700 * time.Millisecond
	passWait = 5 * time.Second
)

func waitFor(pass bool) time.Duration {
	if pass {
		return passWait
	}
	return dropWait
}

// TestNFTFirewallTraffic sends real traffic between two namespaces joined
// by a veth pair, the node's end named wire0 as its WireGuard interface
// would be, and the peer (10.99.0.2) at the other: the rules' ports pass
// and others are dropped, the node's own connections and datagrams get
// their answers, ping passes once allowed, and a connection the peer
// opened stops at the change of rules that forbids it.
func TestNFTFirewallTraffic(t *testing.T) {
	roottest.Need(t, "to create network namespaces and program nftables")
	roottest.RemoveDeadNamespaces(t, nftNamespaces)
	peer, node := newTestNS(t, "p"), newTestNS(t, "n")
	peer.addVeth(t, "veth0", "wire0", node)
	peer.up(t, "veth0", "10.99.0.2/24")
	node.up(t, "wire0", "10.99.0.1/24")
	fw := newTestFirewall(node, "wire0")
	t.Cleanup(func() { fw.close() })
	if err := fw.set(sshOnly); err != nil {
		t.Fatal(err)
	}

	ssh := dialTCP(t, peer, listenTCP(t, node, "10.99.0.1:22"))
	if _, err := tryDialTCP(peer, listenTCP(t, node, "10.99.0.1:23"), dropWait); !isTimeout(err) {
		t.Errorf("connecting to port 23, which the rules forbid: %v, want a timeout (dropped)", err)
	}
	dialTCP(t, node, listenTCP(t, peer, "10.99.0.2:8080")) // the node's own
	checkUDP(t, peer, node, "10.99.0.1:5005", true)
	checkUDP(t, peer, node, "10.99.0.1:5011", false)
	checkUDP(t, node, peer, "10.99.0.2:9000", true) // the node's own, answered

	if pinged(t, peer, "10.99.0.1", dropWait) {
		t.Error("the peer pinged the node, which the rules forbid")
	}
	withPing := filter.Rules{admin: append(sshOnly[admin], filter.Allow{Proto: filter.ICMP})}
	if err := fw.set(withPing); err != nil {
		t.Fatal(err)
	}
	if !pinged(t, peer, "10.99.0.1", passWait) {
		t.Error("no answer to a ping the rules allow")
	}
	stopsAtChange(t, ssh, fw, withPing)
}

// stopsAtChange checks that the connection c, which the peer opened and
// the rules allow, stops when rules without it come, and goes on when the
// rules allow it again: the packets were dropped, not the connection.
func stopsAtChange(t *testing.T, c *tcpPair, fw *nftFirewall, allowing filter.Rules) {
	t.Helper()
	c.check(t, "before", true)
	if err := fw.set(filter.Rules{admin: {{Proto: filter.ICMP}}}); err != nil {
		t.Fatal(err)
	}
	c.send(t, "after")
	if c.received(t, dropWait) {
		t.Error("the connection the rules now forbid went on")
	}
	if err := fw.set(allowing); err != nil {
		t.Fatal(err)
	}
	if !c.received(t, 10*time.Second) { // TCP retransmits
		t.Error("the connection did not resume when allowed again")
	}
}

// tcpPair is both ends of a connection.
type tcpPair struct{ from, to net.Conn }

func (p *tcpPair) send(t *testing.T, msg string) {
	t.Helper()
	if _, err := p.from.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func (p *tcpPair) received(t *testing.T, wait time.Duration) bool {
	t.Helper()
	p.to.SetReadDeadline(time.Now().Add(wait))
	_, err := p.to.Read(make([]byte, 100))
	if err != nil && !isTimeout(err) {
		t.Fatal(err)
	}
	return err == nil
}

func (p *tcpPair) check(t *testing.T, msg string, want bool) {
	t.Helper()
	p.send(t, msg)
	if got := p.received(t, waitFor(want)); got != want {
		t.Fatalf("%q received: %v, want %v", msg, got, want)
	}
}

func listenTCP(t *testing.T, n *testNS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := n.in(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialTCP connects from n to ln and checks that data goes through.
func dialTCP(t *testing.T, n *testNS, ln net.Listener) *tcpPair {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := tryDialTCP(n, ln, passWait)
	if err != nil {
		t.Fatalf("connect from %s to %v: %v", n.name, ln.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	p := &tcpPair{from: c, to: <-accepted}
	t.Cleanup(func() { p.to.Close() })
	p.check(t, "hello", true)
	return p
}

func tryDialTCP(n *testNS, ln net.Listener, wait time.Duration) (c net.Conn, err error) {
	err = n.in(func() error {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), wait)
		return err
	})
	return c, err
}

// checkUDP sends a datagram from n to addr in other, where a socket
// answers it, and checks whether the datagram arrives, and if it does,
// that the answer comes back.
func checkUDP(t *testing.T, from, to *testNS, addr string, want bool) {
	t.Helper()
	var recv, send *net.UDPConn
	if err := to.in(func() (err error) {
		recv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	if err := from.in(func() (err error) { send, err = net.DialUDP("udp4", nil, recv.LocalAddr().(*net.UDPAddr)); return err }); err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	send.Write([]byte("query"))
	buf := make([]byte, 100)
	recv.SetReadDeadline(time.Now().Add(waitFor(want)))
	_, back, err := recv.ReadFromUDP(buf)
	if got := err == nil; got != want {
		t.Fatalf("a datagram from %s to %s arrived: %v, want %v", from.name, addr, got, want)
	}
	if err != nil {
		return
	}
	recv.WriteToUDP([]byte("answer"), back)
	send.SetReadDeadline(time.Now().Add(passWait))
	if _, err := send.Read(buf); err != nil {
		t.Errorf("no answer to a datagram from %s to %s: %v", from.name, addr, err)
	}
}

// pinged says whether an echo request from n to dst is answered within
// wait.
func pinged(t *testing.T, n *testNS, dst string, wait time.Duration) bool {
	t.Helper()
	var c *icmp.PacketConn
	if err := n.in(func() (err error) { c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: 1, Data: []byte("ping")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		if m, err := icmp.ParseMessage(1, buf[:n]); err == nil && m.Type == ipv4.ICMPTypeEchoReply {
			return true
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
