//go:build linux

package lab_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/wire-mesh/wire/lab"
)

// helperEnv, when set, makes the test binary run helperMain instead of the
// tests: the lab re-executes it inside namespaces as a tiny UDP tool.
const helperEnv = "WIRE_LAB_HELPER"

// helperLife bounds every helper's run.
const helperLife = 2 * time.Minute

// helperMain runs one of the UDP helpers:
//
//	echo ADDR...                  answer each datagram with its source address
//	probe LOCALPORT DEST...       ask each echo DEST, from one socket, what it saw
//	punch LOCALPORT PEER SECONDS  send to PEER and listen, from one socket
//	dns SERVER NAME [TYPE]        ask a DNS server, print rcode and addresses
//	dns-upstream ADDR             a fake upstream resolver
//	tcp-echo ADDR...              a TCP echo server on each address
//	tcp-dial ADDR TIMEOUT         connect, exchange a line, print "ok"
//	tcp-hold ADDR                 connect, exchange lines until they stall
func helperMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "helper: no mode")
		return 2
	}
	var err error
	switch args[0] {
	case "echo":
		err = echo(args[1:])
	case "probe":
		err = probe(args[1:])
	case "punch":
		err = punch(args[1:])
	case "dns":
		err = askDNS(args[1:])
	case "dns-upstream":
		err = upstreamDNS(args[1:])
	case "tcp-echo":
		err = tcpEcho(args[1:])
	case "tcp-dial":
		err = tcpDial(args[1:])
	case "tcp-hold":
		err = tcpHold(args[1:])
	default:
		err = fmt.Errorf("unknown mode %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// echo answers every datagram on each address with "IP:PORT" of its
// sender, as a STUN server does, until helperLife has passed.
func echo(addrs []string) error {
	for _, a := range addrs {
		c, err := net.ListenPacket("udp4", a)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(helperLife))
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				c.WriteTo([]byte(from.String()), from)
			}
		}()
	}
	fmt.Println("ready")
	time.Sleep(helperLife)
	return nil
}

// probe sends from one local port to each echo address in turn (up to ten
// tries of 300 ms each) and prints what each saw, one line per address.
func probe(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("probe LOCALPORT DEST...")
	}
	c, err := listen(args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for _, dest := range args[1:] {
		to, err := net.ResolveUDPAddr("udp4", dest)
		if err != nil {
			return err
		}
		seen := ""
		for try := 0; try < 10 && seen == ""; try++ {
			c.WriteTo([]byte("?"), to)
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, from, err := c.ReadFrom(buf)
			if err == nil && from.String() == to.String() {
				seen = string(buf[:n])
			}
		}
		if seen == "" {
			return fmt.Errorf("no answer from %s", dest)
		}
		fmt.Println(seen)
	}
	return nil
}

// punch sends a datagram to PEER every 100 ms for SECONDS and reports
// whether any came back from PEER: both ends running it at once is hole
// punching.
func punch(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("punch LOCALPORT PEER SECONDS")
	}
	c, err := listen(args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	peer, err := net.ResolveUDPAddr("udp4", args[1])
	if err != nil {
		return err
	}
	secs, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	got := 0
	buf := make([]byte, 1500)
	for end := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(end); {
		c.WriteTo([]byte("punch"), peer)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, from, err := c.ReadFrom(buf); err == nil && from.String() == peer.String() {
			got++
		}
	}
	if got == 0 {
		return fmt.Errorf("nothing came from %s", peer)
	}
	fmt.Printf("received %d datagrams from %s\n", got, peer)
	return nil
}

func listen(port string) (net.PacketConn, error) {
	c, err := net.ListenPacket("udp4", ":"+port)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(helperLife))
	return c, nil
}

// askDNS sends one query (SERVER NAME [TYPE], A by default) and prints
// the answer's rcode and addresses; no answer within a second is an
// error.
func askDNS(args []string) error {
	if len(args) != 2 && len(args) != 3 {
		return errors.New("dns: want SERVER NAME [TYPE]")
	}
	qtype := dns.TypeA
	if len(args) == 3 {
		qtype = dns.StringToType[args[2]]
	}
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(args[1]), qtype)
	c := &dns.Client{Timeout: time.Second}
	resp, _, err := c.Exchange(req, net.JoinHostPort(args[0], "53"))
	if err != nil {
		return err
	}
	fmt.Print(dns.RcodeToString[resp.Rcode])
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			fmt.Print(" ", a.A)
		}
	}
	fmt.Println()
	return nil
}

// upstreamDNS is a stand-in for a namespace's own upstream resolver, on
// ADDR (UDP): every A query gets 192.0.2.80, until helperLife has passed.
func upstreamDNS(args []string) error {
	if len(args) != 1 {
		return errors.New("dns-upstream: want ADDR")
	}
	pc, err := net.ListenPacket("udp", args[0])
	if err != nil {
		return err
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 80)}}
		}
		w.WriteMsg(m)
	})}
	fmt.Println("listening")
	time.AfterFunc(helperLife, func() { srv.Shutdown() })
	return srv.ActivateAndServe()
}

// helperArgs is the command line that runs a helper inside a namespace.
func helperArgs(t *testing.T, args ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"env", helperEnv + "=1", exe}, args...)
}

// startEcho runs the echo helper on the host's ports and waits until it
// listens.
func startEcho(t *testing.T, host *lab.NS, ports ...int) *lab.Proc {
	t.Helper()
	var addrs []string
	for _, p := range ports {
		addrs = append(addrs, net.JoinHostPort(host.IP.String(), strconv.Itoa(p)))
	}
	p := lab.Start(t, host, "echo-"+host.Short, helperArgs(t, append([]string{"echo"}, addrs...)...)...)
	if _, err := p.WaitLine("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}
