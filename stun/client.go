package stun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// Retransmission timing (RFC 8489 section 6.2.1): the first retransmission
// after initialRTO, each later one after twice the wait before, up to maxRTO.
const (
	initialRTO = 500 * time.Millisecond
	maxRTO     = 8 * time.Second
)

// Query asks the STUN server for the public address of conn: it sends a
// Binding request from conn, so the mapping observed is conn's own, and
// retransmits it with exponential backoff until an answer comes or ctx is
// done. Datagrams that are not from server, not STUN, or not an answer to
// this transaction are read and discarded, so nothing else may read from
// conn meanwhile. Query leaves conn's read deadline unset when it returns.
func Query(ctx context.Context, conn net.PacketConn, server net.Addr) (netip.AddrPort, error) {
	from, ok := addrPort(server)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("stun: server address %v is not an IP and port", server)
	}
	defer wakeOnDone(ctx, conn)()
	tx := NewTxID()
	req := Request(tx)
	buf := make([]byte, maxDatagram)
	for sent, rto := 1, initialRTO; ; sent, rto = sent+1, min(2*rto, maxRTO) {
		if _, err := conn.WriteTo(req, server); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stun: send request to %v: %w", server, err)
		}
		addr, err := await(ctx, conn, buf, tx, from, time.Now().Add(rto))
		switch {
		case err == nil:
			return addr, nil
		case expired(ctx):
			return netip.AddrPort{}, fmt.Errorf("stun: server %v did not answer (%d requests sent): %w", server, sent, ctx.Err())
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return netip.AddrPort{}, fmt.Errorf("stun: read answer from %v: %w", server, err)
		}
	}
}

// expired reports whether ctx is done, waiting for it if its deadline has
// passed: the socket's deadline may fire before the context's timer.
func expired(ctx context.Context) bool {
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		<-ctx.Done()
	}
	return ctx.Err() != nil
}

// wakeOnDone makes reads on conn return when ctx is done, and returns a
// function that undoes it and clears conn's read deadline.
func wakeOnDone(ctx context.Context, conn net.PacketConn) func() {
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woken)
		conn.SetReadDeadline(time.Unix(1, 0))
	})
	return func() {
		if !stop() {
			<-woken
		}
		conn.SetReadDeadline(time.Time{})
	}
}

// await reads from conn until the answer to transaction tx comes from the
// server at from, or the deadline passes, or ctx is done.
func await(ctx context.Context, conn net.PacketConn, buf []byte, tx TxID, from netip.AddrPort, deadline time.Time) (netip.AddrPort, error) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return netip.AddrPort{}, err
	}
	if err := ctx.Err(); err != nil { // done before the deadline was set
		return netip.AddrPort{}, err
	}
	for {
		n, src, err := conn.ReadFrom(buf)
		if err != nil {
			return netip.AddrPort{}, err
		}
		if addr, ok := answer(buf[:n], src, tx, from); ok {
			return addr, nil
		}
	}
}

// answer returns the mapped address in b if b is the answer to tx from the
// server at from.
func answer(b []byte, src net.Addr, tx TxID, from netip.AddrPort) (netip.AddrPort, bool) {
	if got, ok := addrPort(src); !ok || got != from || !Is(b) {
		return netip.AddrPort{}, false
	}
	got, addr, err := ParseResponse(b)
	if err != nil || got != tx {
		return netip.AddrPort{}, false
	}
	return addr, true
}
