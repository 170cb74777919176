//go:build linux

package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// conn is one HTTP/1.1 connection to the server over TLS, from a node's
// own loopback address, with the node's certificate and the pinned server
// key (api.PinnedTLS), as api.Client holds them: a node keeps one for its
// long-poll and one for everything else. It is not api.Client itself so
// that ten thousand nodes fit in a few processes: no goroutines per
// connection, and /peers answers read as a stream (see answer).
type conn struct {
	raw  *net.TCPConn
	tc   *tls.Conn
	br   *bufio.Reader
	used bool // it has carried a request and its answer
}

// dial connects from src to the server and completes the TLS handshake
// (TLS 1.3: the server checks the client's certificate after it, so a
// refused one shows at the first answer).
func dial(src netip.Addr, server netip.AddrPort, cfg *tls.Config, deadline time.Time) (*conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Deadline: deadline}
	c, err := d.Dial("tcp", server.String())
	if err != nil {
		return nil, &reqError{kind: kindConnect, err: err}
	}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(deadline)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, &reqError{kind: kindTLS, err: err}
	}
	return &conn{raw: c.(*net.TCPConn), tc: tc, br: bufio.NewReaderSize(tc, 1024)}, nil
}

func (c *conn) close() { c.raw.Close() }

// send writes a request and reads the answer's status line and headers;
// the caller reads the body to its end. If a connection that carried a
// request before turns out to have been closed by the server before it
// took this one (the write failed, or, for an idempotent request, the
// connection ended before any answer), the error is stale: net/http's
// transport retries such a request on a new connection, and so do nodes.
func (c *conn) send(req []byte, deadline time.Time, idempotent bool) (*http.Response, error) {
	c.tc.SetDeadline(deadline)
	if _, err := c.tc.Write(req); err != nil {
		return nil, stale(classify(err), c.used)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		// http.ReadResponse reports a connection that ended before the
		// status line as io.ErrUnexpectedEOF.
		ended := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		return nil, stale(classify(err), c.used && idempotent && ended)
	}
	return resp, nil
}

// stale marks a request error as one to retry on a new connection.
func stale(err error, retry bool) error {
	if re, ok := err.(*reqError); ok && retry && re.kind == kindClosed {
		re.stale = true
	}
	return err
}

// idle says whether an idle connection is still open: nothing to read
// and no end of stream. (net/http's transport notices at once when the
// server closes an idle connection, and dials afresh without an error;
// this is how the simulator does the same.)
func (c *conn) idle() bool {
	rc, err := c.raw.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = err == unix.EAGAIN
		return true
	})
	return open
}

// kind is what became of a request.
type kind int

const (
	kindOK      kind = iota
	kindConnect      // TCP connect failed (refused, reset, timed out)
	kindTLS          // the TLS handshake failed
	kindTimeout      // no complete answer before the deadline
	kindClosed       // the server closed or reset the connection
	kindStatus       // an HTTP error status
	kindBody         // a malformed answer
	kindOther
	kindShed // a 503 with a Retry-After: the server asked to be asked again later, not a failure
	nKinds
)

var kindNames = [nKinds]string{"ok", "connect", "tls", "timeout", "closed", "http", "body", "other", "shed"}

func (k kind) String() string { return kindNames[k] }

// reqError is a failed request, with what kind of failure it was.
type reqError struct {
	kind  kind
	err   error
	stale bool // see conn.send
}

func (e *reqError) Error() string { return fmt.Sprintf("%s: %v", e.kind, e.err) }
func (e *reqError) Unwrap() error { return e.err }

// statusError is an answer with an HTTP error status.
type statusError struct {
	code       int
	retryAfter time.Duration // the answer's Retry-After
}

func (e *statusError) Error() string { return "HTTP " + strconv.Itoa(e.code) }

func kindOf(err error) kind {
	var re *reqError
	if errors.As(err, &re) {
		return re.kind
	}
	return kindOther
}

// classify says what kind of failure an error on an open connection is.
func classify(err error) error {
	var se *statusError
	switch {
	case errors.As(err, &se) && se.code == http.StatusServiceUnavailable && se.retryAfter > 0:
		return &reqError{kind: kindShed, err: err}
	case errors.As(err, &se):
		return &reqError{kind: kindStatus, err: err}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &reqError{kind: kindTimeout, err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return &reqError{kind: kindClosed, err: err}
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return &reqError{kind: kindTLS, err: err} // e.g. the server refused the certificate
	}
	return &reqError{kind: kindOther, err: err}
}

// appendGet appends a GET request for path to b.
func appendGet(b []byte, host string, path ...[]byte) []byte {
	b = append(b, "GET "...)
	for _, p := range path {
		b = append(b, p...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	return append(b, "\r\nUser-Agent: wire-scale\r\nContent-Type: application/json\r\n\r\n"...)
}

// appendPost appends a POST request of a JSON body to b.
func appendPost(b []byte, host, path string, body []byte) []byte {
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: wire-scale\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}
