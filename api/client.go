package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Client talks to a coordination server. Over https it accepts only the
// pinned server key and authenticates with the node's certificate; over
// http (a server in --open mode) it authenticates nothing.
type Client struct {
	bases []*url.URL   // the servers of one mesh, tried in turn
	cur   atomic.Int32 // the one in use
	http  *http.Client
	token string
}

// ClientConfig says how to reach and trust a server.
type ClientConfig struct {
	URL string
	// Others are more servers of the same mesh (replicas sharing a store,
	// presenting the same key), tried in turn when the one in use does
	// not answer or answers that it cannot serve.
	Others []string
	Pin    Pin              // required for https URLs
	Cert   *tls.Certificate // the node's identity; nil before enrolment is fine
	// AdminToken, if set, is sent as a bearer token (for /status and
	// /peers without a node identity).
	AdminToken string
}

// NewClient checks the URLs and returns a client for them.
func NewClient(cfg ClientConfig) (*Client, error) {
	var bases []*url.URL
	for _, s := range append([]string{cfg.URL}, cfg.Others...) {
		u, err := ParseServerURL(s)
		if err != nil {
			return nil, err
		}
		if len(bases) > 0 && u.Scheme != bases[0].Scheme {
			return nil, fmt.Errorf("server URLs %s and %s: the servers of one mesh are all https, or all http", bases[0], u)
		}
		bases = append(bases, u)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the control channel goes straight to the server
	tr.ForceAttemptHTTP2 = false
	if len(bases) > 1 {
		// A server that does not answer costs seconds, not half a minute,
		// before the next is tried.
		tr.DialContext = (&net.Dialer{Timeout: failoverDial, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = failoverDial
	}
	if bases[0].Scheme == "https" {
		tr.TLSClientConfig = PinnedTLS(cfg.Pin, cfg.Cert)
	}
	return &Client{bases: bases, http: &http.Client{Transport: tr}, token: cfg.AdminToken}, nil
}

// failoverDial bounds connecting to one of several servers.
const failoverDial = 5 * time.Second

// ParseServerURL accepts http:// and https:// URLs with a host and no path.
func ParseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		return nil, fmt.Errorf("server URL %q: want http(s)://HOST:PORT", s)
	}
	return u, nil
}

// URL is the server's base URL.
func (c *Client) URL() string { return c.base().String() }

// base is the server in use.
func (c *Client) base() *url.URL { return c.bases[c.cur.Load()] }

// CloseIdle closes idle connections, e.g. after the node's key changed.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// StatusError is a response from the server with a 4xx or 5xx status.
type StatusError struct {
	Code    int
	Message string
	// Reason is the error's Error.Code, if the server gave one.
	Reason string
	// RetryAfter is how long the server asked to be left alone (its
	// Retry-After, in seconds), 0 if it did not say.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server said %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// Register enrols the node (req.JoinKey set) or sends its heartbeat.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (RegisterResponse, error) {
	var resp RegisterResponse
	return resp, c.do(ctx, http.MethodPost, PathRegister, req, &resp)
}

// Peers returns the online nodes. With since set, it waits up to wait for
// a change after that version and returns only what changed.
func (c *Client) Peers(ctx context.Context, since string, wait time.Duration) (PeersResponse, error) {
	path := PathPeers
	if since != "" {
		q := url.Values{"since": {since}, "wait": {wait.String()}}
		path += "?" + q.Encode()
	}
	var resp PeersResponse
	return resp, c.do(ctx, http.MethodGet, path, nil, &resp)
}

// Status returns every node the server lists.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var resp Status
	return resp, c.do(ctx, http.MethodGet, PathStatus, nil, &resp)
}

// Health checks that the server is up.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var resp Health
	return resp, c.do(ctx, http.MethodGet, PathHealth, nil, &resp)
}

// Punch reports a failed direct attempt at a peer.
func (c *Client) Punch(ctx context.Context, req PunchRequest) (PunchResponse, error) {
	var resp PunchResponse
	return resp, c.do(ctx, http.MethodPost, PathPunch, req, &resp)
}

// Relay asks for this node's relay credentials.
func (c *Client) Relay(ctx context.Context) (RelayResponse, error) {
	var resp RelayResponse
	return resp, c.do(ctx, http.MethodPost, PathRelay, struct{}{}, &resp)
}

// RelayUpgrade is the protocol PathRelayStream upgrades to.
const RelayUpgrade = "wire-relay/1"

// RelayStream opens the relay over TCP on the server in use: a connection
// authenticated as every request is, then handed to the relay. ctx bounds
// the opening only; the stream lasts until it is closed.
func (c *Client) RelayStream(ctx context.Context) (io.ReadWriteCloser, error) {
	base := c.base()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.String()+PathRelayStream, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", RelayUpgrade)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, reachError(base, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		if err := decodeResponse(resp, &OK{}); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("server %s answered %s to the relay stream, not 101 Switching Protocols", base, resp.Status)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, fmt.Errorf("server %s: the upgraded connection is not writable", base)
	}
	return rw, nil
}

// Offline tells the server that this node is going down (wire down): it
// leaves the online set now, rather than when its heartbeats stop. Its
// next heartbeat brings it back.
func (c *Client) Offline(ctx context.Context) error {
	var resp OK
	return c.do(ctx, http.MethodPost, PathOffline, struct{}{}, &resp)
}

// do sends a request to the server in use, and on to the next of several
// while one cannot be reached or cannot serve; the first that answers is
// used from then on.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	first := int(c.cur.Load())
	var err error
	for i := range c.bases {
		at := (first + i) % len(c.bases)
		err = c.doAt(ctx, c.bases[at], method, path, b, body != nil, out)
		switch {
		case err == nil:
			if at != first {
				c.cur.Store(int32(at))
			}
			return nil
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			// The server took all the time there was: one that accepts
			// connections but does not answer must not keep the node. The
			// next request goes to the next server.
			c.cur.CompareAndSwap(int32(first), int32((at+1)%len(c.bases)))
			return err
		case !failover(err) || ctx.Err() != nil:
			return err
		}
	}
	return err
}

func (c *Client) doAt(ctx context.Context, base *url.URL, method, path string, body []byte, hasBody bool, out any) error {
	var rd io.Reader
	if hasBody {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base.String()+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reachError(base, err)
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

// failover says whether err is worth trying another server for: it could
// not be reached, or said it cannot serve just now.
func failover(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled)
}

func reachError(base *url.URL, err error) error {
	if errors.Is(err, ErrPinMismatch) {
		return fmt.Errorf("server %s: %w", base, ErrPinMismatch)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("server %s did not answer in time (%w): is it running, reachable from here, and is that its port?", base, err)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("cannot reach server %s (%v): is wire server running there?", base, err)
}

// RetryAfter is an answer's Retry-After in seconds, at most a minute; 0
// if it has none.
func RetryAfter(h http.Header) time.Duration {
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || secs <= 0 {
		return 0
	}
	return min(time.Duration(secs)*time.Second, time.Minute)
}

func decodeResponse(resp *http.Response, out any) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode >= 400 {
		var e Error
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		return &StatusError{Code: resp.StatusCode, Message: e.Error, Reason: e.Code, RetryAfter: RetryAfter(resp.Header)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("server sent a malformed %T: %w", out, err)
	}
	return nil
}
