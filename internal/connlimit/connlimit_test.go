package connlimit

import (
	"net"
	"testing"
	"time"
)

// startAccepting serves ln's connections by holding them open.
func startAccepting(t *testing.T, tr *Tracker) (addr string, accepted chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = make(chan net.Conn, 64)
	l := tr.Listener(ln)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return ln.Addr().String(), accepted
}

func dial(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closed says whether the other end has closed c.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	ne, ok := err.(net.Error)
	return err != nil && !(ok && ne.Timeout())
}

func TestLimits(t *testing.T) {
	// 127.0.0.1 is trusted, other addresses are not.
	byIP := func(c net.Conn) (string, bool) {
		ip := c.RemoteAddr().(*net.TCPAddr).IP.String()
		return ip, ip == "127.0.0.1"
	}
	tr := New(Limits{Total: 4, PerKey: 2, Idle: time.Minute}, byIP, nil)
	addr, accepted := startAccepting(t, tr)
	wait := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-accepted:
			case <-time.After(2 * time.Second):
				t.Fatal("a connection was not accepted")
			}
		}
	}

	// Per source: a third untrusted connection from one address closes
	// that address's oldest.
	a1, a2 := dial(t, "127.0.0.2", addr), dial(t, "127.0.0.2", addr)
	wait(2)
	a3 := dial(t, "127.0.0.2", addr)
	wait(1)
	if !closed(a1) || closed(a2) || closed(a3) {
		t.Errorf("per-source eviction: a1 closed %v, a2 %v, a3 %v; want a1 alone", closed(a1), closed(a2), closed(a3))
	}
	// In total: trusted connections make the untrusted give way, oldest
	// first, and are never closed for others.
	t1, t2, t3 := dial(t, "127.0.0.1", addr), dial(t, "127.0.0.1", addr), dial(t, "127.0.0.1", addr)
	wait(3)
	if !closed(a2) || closed(a3) {
		t.Errorf("the oldest untrusted connection did not give way alone: a2 closed %v, a3 %v", closed(a2), closed(a3))
	}
	t4 := dial(t, "127.0.0.1", addr)
	wait(1)
	if !closed(a3) {
		t.Error("the last untrusted connection did not give way")
	}
	late := dial(t, "127.0.0.3", addr)
	if !closed(late) {
		t.Error("a connection was admitted while every one held was trusted")
	}
	for i, c := range []net.Conn{t1, t2, t3, t4} {
		if closed(c) {
			t.Errorf("trusted connection %d was closed", i+1)
		}
	}
	if st := tr.Stats(); st.Open != 4 || st.Refused != 1 || st.Evicted != 3 {
		t.Errorf("stats = %+v, want 4 open, 1 refused, 3 evicted", st)
	}
}
