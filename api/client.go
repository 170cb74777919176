package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a coordination server. Over https it accepts only the
// pinned server key and authenticates with the node's certificate; over
// http (a server in --open mode) it authenticates nothing.
type Client struct {
	base  *url.URL
	http  *http.Client
	token string
}

// ClientConfig says how to reach and trust a server.
type ClientConfig struct {
	URL  string
	Pin  Pin              // required for https URLs
	Cert *tls.Certificate // the node's identity; nil before enrolment is fine
	// AdminToken, if set, is sent as a bearer token (for /status and
	// /peers without a node identity).
	AdminToken string
}

// NewClient checks the URL and returns a client for it.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := ParseServerURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the control channel goes straight to the server
	tr.ForceAttemptHTTP2 = false
	if u.Scheme == "https" {
		tr.TLSClientConfig = PinnedTLS(cfg.Pin, cfg.Cert)
	}
	return &Client{base: u, http: &http.Client{Transport: tr}, token: cfg.AdminToken}, nil
}

// ParseServerURL accepts http:// and https:// URLs with a host and no path.
func ParseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		return nil, fmt.Errorf("server URL %q: want http(s)://HOST:PORT", s)
	}
	return u, nil
}

// URL is the server's base URL.
func (c *Client) URL() string { return c.base.String() }

// CloseIdle closes idle connections, e.g. after the node's key changed.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// StatusError is a response from the server with a 4xx or 5xx status.
type StatusError struct {
	Code    int
	Message string
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

// Offline tells the server that this node is going down (wire down): it
// leaves the online set now, rather than when its heartbeats stop. Its
// next heartbeat brings it back.
func (c *Client) Offline(ctx context.Context) error {
	var resp OK
	return c.do(ctx, http.MethodPost, PathOffline, struct{}{}, &resp)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.reachError(err)
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

func (c *Client) reachError(err error) error {
	if errors.Is(err, ErrPinMismatch) {
		return fmt.Errorf("server %s: %w", c.base, ErrPinMismatch)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("server %s did not answer in time (%w): is it running, reachable from here, and is that its port?", c.base, err)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("cannot reach server %s (%v): is wire server running there?", c.base, err)
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
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("server sent a malformed %T: %w", out, err)
	}
	return nil
}
