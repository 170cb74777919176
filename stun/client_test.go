package stun

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeServer answers each request it reads with answer, which may send
// anything from conn (or elsewhere), until the test ends.
func fakeServer(t *testing.T, answer func(conn net.PacketConn, req []byte, from net.Addr)) net.Addr {
	t.Helper()
	conn := listen(t, "udp4", "127.0.0.1")
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed at the end of the test
			}
			answer(conn, bytes.Clone(buf[:n]), from)
		}
	}()
	return conn.LocalAddr()
}

func TestQueryIgnoresOtherDatagrams(t *testing.T) {
	want := netip.MustParseAddrPort("198.51.100.7:4242")
	wrong := netip.MustParseAddrPort("203.0.113.66:6666")
	elsewhere := listen(t, "udp4", "127.0.0.1")
	tests := []struct {
		name      string
		noise     func(tx TxID) []byte
		elsewhere bool // sent from another socket than the server's
	}{
		{"wrong transaction", func(TxID) []byte { return Response(NewTxID(), wrong, true) }, false},
		{"other sender", func(tx TxID) []byte { return Response(tx, wrong, true) }, true},
		{"not STUN", func(TxID) []byte { return []byte("not a STUN message at all") }, false},
		{"request echoed", Request, false},
		{"error response", func(tx TxID) []byte { return build(0x0111, tx, true, uint16(0x0020), xorAddress(tx, wrong)) }, false},
		{"bad fingerprint", func(tx TxID) []byte { r := Response(tx, wrong, true); r[len(r)-1] ^= 1; return r }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeServer(t, func(conn net.PacketConn, req []byte, from net.Addr) {
				tx, _, _ := ParseBindingRequest(req)
				sender := conn
				if tt.elsewhere {
					sender = elsewhere
				}
				sender.WriteTo(tt.noise(tx), from)
				conn.WriteTo(Response(tx, want, true), from)
			})
			got, err := Query(timeout(t, 5*time.Second), listen(t, "udp4", "127.0.0.1"), srv)
			if err != nil || got != want {
				t.Errorf("Query = %v, %v; want %v", got, err, want)
			}
		})
	}
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestQueryRetransmits drops the first request: Query must send it again,
// unchanged, and take the answer to the second.
func TestQueryRetransmits(t *testing.T) {
	want := netip.MustParseAddrPort("198.51.100.7:4242")
	reqs := make(chan []byte, 10)
	srv := fakeServer(t, func(conn net.PacketConn, req []byte, from net.Addr) {
		reqs <- req
		if len(reqs) > 1 {
			tx, _, _ := ParseBindingRequest(req)
			conn.WriteTo(Response(tx, want, false), from)
		}
	})
	got, err := Query(timeout(t, 5*time.Second), listen(t, "udp4", "127.0.0.1"), srv)
	if err != nil || got != want {
		t.Fatalf("Query = %v, %v; want %v", got, err, want)
	}
	first, second := <-reqs, <-reqs
	if !bytes.Equal(first, second) {
		t.Errorf("retransmission %x differs from the first request %x", second, first)
	}
	if _, _, err := ParseBindingRequest(first); err != nil {
		t.Errorf("Query sent a bad request: %v", err)
	}
}

// TestQueryNoAnswer checks that Query gives up when ctx ends, before its
// first retransmission, says the server did not answer, and leaves conn
// usable with no read deadline.
func TestQueryNoAnswer(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func(t *testing.T) context.Context
		wantErr error
	}{
		{"deadline", func(t *testing.T) context.Context { return timeout(t, 100*time.Millisecond) }, context.DeadlineExceeded},
		{"cancelled", func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			t.Cleanup(cancel)
			return ctx
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			silent := listen(t, "udp4", "127.0.0.1")
			client := listen(t, "udp4", "127.0.0.1")
			start := time.Now()
			_, err := Query(tt.ctx(t), client, silent.LocalAddr())
			if elapsed := time.Since(start); elapsed >= initialRTO {
				t.Errorf("Query took %v to give up, want under %v", elapsed, initialRTO)
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "did not answer") {
				t.Errorf("Query error = %v, want %v saying the server did not answer", err, tt.wantErr)
			}
			checkNoDeadline(t, client, silent)
		})
	}
}

// checkNoDeadline checks that a read on conn blocks until peer sends.
func checkNoDeadline(t *testing.T, conn, peer net.PacketConn) {
	t.Helper()
	read := make(chan error, 1)
	go func() {
		_, _, err := conn.ReadFrom(make([]byte, 64))
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("read returned at once (%v): a read deadline was left set", err)
	case <-time.After(100 * time.Millisecond):
	}
	peer.WriteTo([]byte("wake"), conn.LocalAddr())
	if err := <-read; err != nil {
		t.Errorf("read after Query: %v", err)
	}
}

func TestQueryBadServerAddress(t *testing.T) {
	_, err := Query(context.Background(), listen(t, "udp4", "127.0.0.1"), &net.UnixAddr{Name: "/nowhere", Net: "unixgram"})
	if err == nil {
		t.Error("Query to a Unix address succeeded, want an error")
	}
}
