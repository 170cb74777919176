package wg

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/vishvananda/netns"

	"github.com/wire-mesh/wire/filter"
	"github.com/wire-mesh/wire/internal/roottest"
)

// The namespaces of these tests are named wgn<pid><letter>.
var nftNamespaces = regexp.MustCompile(`^wgn([0-9]+)[a-z]$`)

// testNS is a named network namespace the test created, and removes.
type testNS struct {
	namespace
	name string
	nl   *rtnetlink.Conn
}

func newTestNS(t *testing.T, letter string) *testNS {
	t.Helper()
	n := &testNS{name: fmt.Sprintf("wgn%d%s", os.Getpid(), letter)}
	err := onThread(func() error {
		h, err := netns.NewNamed(n.name) // and enters it
		n.namespace = namespace{handle: h, ok: err == nil}
		return err
	})
	if err != nil {
		t.Fatalf("create network namespace %s: %v", n.name, err)
	}
	t.Cleanup(func() {
		n.close()
		if err := netns.DeleteNamed(n.name); err != nil {
			t.Errorf("remove network namespace %s: %v", n.name, err)
		}
	})
	if n.nl, err = n.netlink(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.nl.Close() })
	return n
}

// in runs fn inside n, where the sockets it opens stay.
func (n *testNS) in(fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(n.handle); err != nil {
			return err
		}
		return fn()
	})
}

// onThread runs fn, which may move its thread to another network
// namespace, on a thread of its own that it then puts back: a thread
// left elsewhere dies with its goroutine, unless it is the main thread,
// which lives on in that namespace, and so does /proc/self/net.
func onThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer home.Close()
		err = fn()
		if netns.Set(home) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// up adds prefix (if any) to the link name and brings it up.
func (n *testNS) up(t *testing.T, name, prefix string) {
	t.Helper()
	l := &link{c: n.nl, name: name}
	if prefix != "" {
		if err := l.setAddress(netip.Prefix{}, netip.MustParsePrefix(prefix)); err != nil {
			t.Fatalf("in %s: %v", n.name, err)
		}
	}
	if err := l.up(); err != nil {
		t.Fatal(err)
	}
}

// addVeth creates a veth pair in n: name, and peer in the namespace
// peerNS (nil: n).
func (n *testNS) addVeth(t *testing.T, name, peer string, peerNS *testNS) {
	t.Helper()
	p := &rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: peer}}
	if peerNS != nil {
		p.Attributes.NetNS = rtnetlink.NetNSForFD(uint32(peerNS.handle))
	}
	err := n.nl.Link.New(&rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{
		Name: name,
		Info: &rtnetlink.LinkInfo{Kind: "veth", Data: &driver.Veth{PeerInfo: p}},
	}})
	if err != nil {
		t.Fatalf("in %s: create veth pair %s, %s: %v", n.name, name, peer, err)
	}
}

func (n *testNS) nft(t *testing.T) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(n.handle)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chains lists the chains of table inet wire in n; nil if there is no
// such table.
func (n *testNS) chains(t *testing.T) []string {
	t.Helper()
	all, err := n.nft(t).ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range all {
		if c.Table.Name == "wire" {
			names = append(names, c.Name)
		}
	}
	slices.Sort(names)
	return names
}

// listing is `nft list table inet wire` in n, or "" when the nft tool is
// not installed.
func (n *testNS) listing(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Log("no nft tool: the rules are not checked as text")
		return ""
	}
	out, err := exec.Command("ip", "netns", "exec", n.name, "nft", "list", "table", "inet", "wire").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table inet wire: %v\n%s", err, out)
	}
	return string(out)
}

// plantLeftover creates a table inet wire as a crashed run might have
// left it, with a chain of another name.
func (n *testNS) plantLeftover(t *testing.T) {
	t.Helper()
	c := n.nft(t)
	c.AddTable(nftTable)
	c.AddChain(&nftables.Chain{Name: "stale", Table: nftTable})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func newTestFirewall(n *testNS, iface string) *nftFirewall {
	return &nftFirewall{iface: iface, ns: n.namespace, log: slog.New(slog.DiscardHandler)}
}

var (
	admin   = netip.MustParseAddr("10.99.0.2")
	monitor = netip.MustParseAddr("10.99.0.3")
	sshOnly = filter.Rules{
		admin:   {{Proto: filter.TCP, Ports: filter.PortRange{First: 22, Last: 22}}, {Proto: filter.UDP, Ports: filter.PortRange{First: 5000, Last: 5010}}},
		monitor: {{Proto: filter.Any, Ports: filter.PortRange{First: 9100, Last: 9100}}, {Proto: 47}},
	}
)

// TestNFTFirewall programs rules in a namespace of its own, over a table a
// crashed run left, and reads them back; replaces them; removes them with
// no filter, and on close.
func TestNFTFirewall(t *testing.T) {
	roottest.Need(t, "to create network namespaces and program nftables")
	roottest.RemoveDeadNamespaces(t, nftNamespaces)
	n := newTestNS(t, "f")
	n.addVeth(t, "wire0", "wire1", nil)
	n.plantLeftover(t)
	fw := newTestFirewall(n, "wire0")
	if err := fw.set(sshOnly); err != nil {
		t.Fatal(err)
	}
	if got, want := n.chains(t), []string{"input", "mesh"}; !slices.Equal(got, want) {
		t.Errorf("chains = %q, want %q: the leftover table replaced", got, want)
	}
	checkListing(t, n.listing(t), []string{
		`type filter hook input priority filter; policy accept;`,
		`iifname "wire0" jump mesh`,
		`meta nfproto != ipv4 drop`,
		`ct direction reply accept`,
		`ct state related accept`,
		`ip saddr 10.99.0.2 tcp dport 22 accept`,
		`ip saddr 10.99.0.2 udp dport 5000-5010 accept`,
		`ip saddr 10.99.0.3 tcp dport 9100 accept`,
		`ip saddr 10.99.0.3 udp dport 9100 accept`,
		`ip saddr 10.99.0.3 icmp type != echo-reply icmp type != destination-unreachable icmp type != source-quench icmp type != redirect icmp type != time-exceeded icmp type != parameter-problem accept`,
		`ip saddr 10.99.0.3 meta l4proto gre accept`,
		`drop`,
	})

	if err := fw.set(filter.Rules{admin: {{Proto: filter.ICMP}}}); err != nil {
		t.Fatal(err)
	}
	text := n.listing(t)
	if strings.Contains(text, "dport") || text != "" && !strings.Contains(text, "ip saddr 10.99.0.2 icmp type") {
		t.Errorf("after new rules, the table is:\n%s\nwant only the ICMP rule of 10.99.0.2", text)
	}
	if err := fw.set(nil); err != nil {
		t.Fatal(err)
	}
	if got := n.chains(t); got != nil {
		t.Errorf("with no filter, table inet wire has chains %q, want no table", got)
	}
	if err := fw.set(sshOnly); err != nil {
		t.Fatal(err)
	}
	if err := fw.close(); err != nil {
		t.Fatal(err)
	}
	if got := n.chains(t); got != nil {
		t.Errorf("after close, table inet wire has chains %q, want no table", got)
	}
	if err := fw.set(nil); err != nil {
		t.Errorf("no filter, and no table: %v", err)
	}

	n.plantLeftover(t)
	if err := newTestFirewall(n, "wire0").set(nil); err != nil {
		t.Fatal(err)
	}
	if got := n.chains(t); got != nil {
		t.Errorf("a first Set with no filter left the leftover table's chains %q", got)
	}
}

// checkListing checks that text, nft's listing, has each of want on a
// line of its own, in order.
func checkListing(t *testing.T, text string, want []string) {
	t.Helper()
	if text == "" {
		return
	}
	var lines []string
	for l := range strings.Lines(text) {
		lines = append(lines, strings.TrimSpace(l))
	}
	i := 0
	for _, l := range lines {
		if i < len(want) && l == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("table inet wire lacks %q (or has it out of order):\n%s", want[i], text)
	}
}
