package resolver

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var ctx = context.Background()

func mesh() *Server {
	s := New(Options{})
	s.Set("wire", map[string]netip.Addr{"n2": netip.MustParseAddr("10.99.0.2"), "Laptop": netip.MustParseAddr("10.99.0.3")})
	return s
}

func ask(t *testing.T, s *Server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	b, _ := req.Pack()
	out := s.Handle(ctx, b)
	if out == nil {
		t.Fatalf("%s %s: no answer", name, dns.TypeToString[qtype])
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if resp.Id != req.Id || !resp.Response {
		t.Fatalf("%s: answer %d to query %d", name, resp.Id, req.Id)
	}
	return resp
}

func TestMeshNames(t *testing.T) {
	s := mesh()
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer string // the A record's address, "" for none
	}{
		{"n2.wire.", dns.TypeA, dns.RcodeSuccess, "10.99.0.2"},
		{"N2.WIRE.", dns.TypeA, dns.RcodeSuccess, "10.99.0.2"},
		{"laptop.wire.", dns.TypeA, dns.RcodeSuccess, "10.99.0.3"},
		{"n2.wire.", dns.TypeAAAA, dns.RcodeSuccess, ""}, // NODATA
		{"n2.wire.", dns.TypeMX, dns.RcodeSuccess, ""},
		{"wire.", dns.TypeA, dns.RcodeSuccess, ""},
		{"nobody.wire.", dns.TypeA, dns.RcodeNameError, ""}, // NXDOMAIN
		{"nobody.wire.", dns.TypeAAAA, dns.RcodeNameError, ""},
		{"www.n2.wire.", dns.TypeA, dns.RcodeNameError, ""},
	}
	for _, tt := range tests {
		resp := ask(t, s, tt.name, tt.qtype)
		got := ""
		if len(resp.Answer) == 1 {
			got = resp.Answer[0].(*dns.A).A.String()
		}
		if resp.Rcode != tt.rcode || got != tt.answer || len(resp.Answer) > 1 || !resp.Authoritative {
			t.Errorf("%s %s: rcode %s answer %q aa %t; want %s %q", tt.name, dns.TypeToString[tt.qtype],
				dns.RcodeToString[resp.Rcode], got, resp.Authoritative, dns.RcodeToString[tt.rcode], tt.answer)
		}
		if tt.answer == "" && (len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s %s: a negative answer without the SOA: %v", tt.name, dns.TypeToString[tt.qtype], resp.Ns)
		}
	}
}

func TestRename(t *testing.T) {
	s := mesh()
	s.Set("wire", map[string]netip.Addr{"n2-new": netip.MustParseAddr("10.99.0.2")})
	if r := ask(t, s, "n2.wire.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("the old name after a rename: %s", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, s, "n2-new.wire.", dns.TypeA); len(r.Answer) != 1 {
		t.Errorf("the new name: %v", r)
	}
}

// Update renames and drops names without touching the others.
func TestUpdate(t *testing.T) {
	s := mesh()
	s.Update(map[string]netip.Addr{"N2-new": netip.MustParseAddr("10.99.0.2")}, []string{"N2"})
	for name, want := range map[string]int{"n2.wire.": dns.RcodeNameError, "n2-new.wire.": dns.RcodeSuccess, "laptop.wire.": dns.RcodeSuccess} {
		if r := ask(t, s, name, dns.TypeA); r.Rcode != want {
			t.Errorf("%s after the update: %s, want %s", name, dns.RcodeToString[r.Rcode], dns.RcodeToString[want])
		}
	}
}

func TestRefusedAndMalformed(t *testing.T) {
	s := mesh()
	chaos := new(dns.Msg)
	chaos.SetQuestion("n2.wire.", dns.TypeA)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	b, _ := chaos.Pack()
	resp := new(dns.Msg)
	if resp.Unpack(s.Handle(ctx, b)) != nil || resp.Rcode != dns.RcodeRefused {
		t.Errorf("a CHAOS query: %v", resp)
	}
	two := new(dns.Msg)
	two.SetQuestion("n2.wire.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	twoB, _ := two.Pack()
	answer := new(dns.Msg)
	answer.SetQuestion("n2.wire.", dns.TypeA)
	answer.Response = true
	answerB, _ := answer.Pack()
	for name, b := range map[string][]byte{
		"garbage": []byte("not dns at all"), "empty": nil, "two questions": twoB, "a response": answerB,
		"oversized": append(append([]byte(nil), twoB...), make([]byte, MaxQuery)...), "header only": twoB[:12],
	} {
		if out := s.Handle(ctx, b); out != nil {
			t.Errorf("%s: answered (%d bytes); want it dropped", name, len(out))
		}
	}
}

// upstream is a resolver on loopback that knows example.com.
func upstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP("192.0.2.1")}}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestForward(t *testing.T) {
	up := upstream(t)
	s := New(Options{Upstreams: func() []string { return []string{"127.0.0.1:1", up} }}) // the first does not answer
	s.Set("wire", nil)
	resp := ask(t, s, "example.com.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.1" || resp.Answer[0].Header().Ttl != 300 {
		t.Errorf("forwarded answer: %v", resp)
	}
	none := New(Options{})
	if resp := ask(t, none, "example.com.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("with no upstream: %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

// TestServeOnlyAllowed: queries from addresses the server does not allow
// (the mesh's other nodes, anyone else) get no answer at all.
func TestServeOnlyAllowed(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Allow: func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.2") }})
	s.Set("wire", map[string]netip.Addr{"n2": netip.MustParseAddr("10.99.0.2")})
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- s.Serve(sctx, pc) }()
	defer func() { cancel(); <-done }()
	for from, want := range map[string]bool{"127.0.0.2": true, "127.0.0.3": false} {
		c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}}
		req := new(dns.Msg)
		req.SetQuestion("n2.wire.", dns.TypeA)
		resp, _, err := c.Exchange(req, pc.LocalAddr().String())
		if got := err == nil && len(resp.Answer) == 1; got != want {
			t.Errorf("query from %s: answered %t (%v), want %t", from, got, err, want)
		}
	}
}

func TestUpstreams(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	writeFile(t, path, "# test\nnameserver 10.99.0.7\nnameserver 192.0.2.53\nsearch example.net\n")
	got := Upstreams(path, netip.MustParseAddr("10.99.0.7"))
	if len(got) != 1 || got[0] != "192.0.2.53:53" {
		t.Errorf("Upstreams = %v, want [192.0.2.53:53] (this node's own resolver left out)", got)
	}
}

func FuzzHandle(f *testing.F) {
	s := mesh()
	for _, name := range []string{"n2.wire.", "nobody.wire.", "wire."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.SetEdns0(4096, false)
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		out := s.Handle(ctx, b)
		if out == nil {
			return
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(out); err != nil || !resp.Response {
			t.Fatalf("answer does not parse: %v", err)
		}
	})
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bigUpstream answers every A query with 60 addresses (over 512 bytes),
// on UDP and TCP at one address.
func bigUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for i := range 60 {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(192, 0, 2, byte(i+1))})
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncate(dns.MinMsgSize)
		}
		w.WriteMsg(m)
	})
	u := &dns.Server{PacketConn: pc, Handler: h}
	tc := &dns.Server{Listener: ln, Handler: h}
	go u.ActivateAndServe()
	go tc.ActivateAndServe()
	t.Cleanup(func() { u.Shutdown(); tc.Shutdown() })
	return pc.LocalAddr().String()
}

// TestTCP: over TCP the resolver answers the mesh's names and gives the
// whole of an upstream answer that UDP can only give truncated; it closes
// connections from addresses it does not serve.
func TestTCP(t *testing.T) {
	up := bigUpstream(t)
	s := New(Options{
		Allow:     func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.2") },
		Upstreams: func() []string { return []string{up} },
	})
	s.Set("wire", map[string]netip.Addr{"n2": netip.MustParseAddr("10.99.0.2")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- s.ServeTCP(sctx, ln) }()
	defer func() { cancel(); <-done }()

	client := func(from string) *dns.Client {
		return &dns.Client{Net: "tcp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}}
	}
	req := new(dns.Msg)
	req.SetQuestion("n2.wire.", dns.TypeA)
	if resp, _, err := client("127.0.0.2").Exchange(req, ln.Addr().String()); err != nil || len(resp.Answer) != 1 {
		t.Errorf("n2.wire over TCP: %v %v", resp, err)
	}
	big := new(dns.Msg)
	big.SetQuestion("many.example.", dns.TypeA)
	resp, _, err := client("127.0.0.2").Exchange(big, ln.Addr().String())
	if err != nil || len(resp.Answer) != 60 || resp.Truncated {
		t.Errorf("a large upstream answer over TCP: %d records, truncated %v, %v; want all 60", len(resp.Answer), resp != nil && resp.Truncated, err)
	}
	if out := s.Handle(ctx, mustPack(t, big)); out != nil {
		udp := new(dns.Msg)
		udp.Unpack(out)
		if !udp.Truncated || len(out) > dns.MinMsgSize {
			t.Errorf("the same over UDP: %d bytes, truncated %v; want it truncated to 512", len(out), udp.Truncated)
		}
	}
	if _, _, err := client("127.0.0.3").Exchange(req, ln.Addr().String()); err == nil {
		t.Error("a TCP query from an address the resolver does not serve was answered")
	}
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
