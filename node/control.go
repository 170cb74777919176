package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/wire-mesh/wire/internal/connlimit"
)

// The control API is HTTP on a unix socket in the state dir. Reading
// (status, peers, ping) is open to every local user; changing (down) needs
// root, judged by the caller's credentials on the socket.

type ctxKey struct{}

// listen opens the control socket; a live socket means another daemon
// owns this state dir.
func (d *Daemon) listen() error {
	path := filepath.Join(d.dir, SocketFile)
	if err := removeStaleSocket(path); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	os.Chmod(path, 0o666) // reading is for everyone; changes check credentials
	d.ln = ln
	return nil
}

// controlLimits bound the control socket's connections: its mode is
// 0666, and idle connections held by any local user must not use up the
// daemon's file descriptors. Root's are never closed to make room.
var controlLimits = connlimit.Limits{Total: 128, PerKey: 16, Idle: 5 * time.Second}

// serve answers the control API until ctx ends.
func (d *Daemon) serve(ctx context.Context) {
	conns := connlimit.New(controlLimits, byUser, nil)
	srv := &http.Server{
		Handler:           d.controlHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ConnState:         conns.State,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			uid, err := peerUID(c.(*net.UnixConn))
			return context.WithValue(ctx, ctxKey{}, uid == 0 && err == nil)
		},
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(conns.Listener(d.ln)); !errors.Is(err, http.ErrServerClosed) {
		d.log.Error("control socket failed; stopping", "err", err)
		d.Down()
	}
}

// removeStaleSocket removes a socket no daemon answers on; a live one
// means another daemon owns this state dir.
func removeStaleSocket(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("a wire daemon is already running on %s (wire down stops it)", path)
	}
	return os.Remove(path)
}

// byUser counts a control connection by its user, and trusts root.
func byUser(c net.Conn) (string, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return "?", false
	}
	uid, err := peerUID(uc)
	if err != nil {
		return "?", false
	}
	return strconv.FormatUint(uint64(uid), 10), uid == 0
}

func isRoot(r *http.Request) bool {
	root, _ := r.Context().Value(ctxKey{}).(bool)
	return root
}

func (d *Daemon) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, d.Status(r.Context()))
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]any{"peers": d.Peers(r.Context())})
	})
	mux.HandleFunc("POST /v1/ping", d.handlePing)
	d.messageRoutes(mux)
	d.pairRoutes(mux)
	mux.HandleFunc("POST /v1/authenticate", d.handleAuthenticate)
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, r *http.Request) {
		if !isRoot(r) {
			reply(w, http.StatusForbidden, errorBody{"wire down needs root: run it with sudo"})
			return
		}
		reply(w, http.StatusOK, map[string]bool{"ok": true})
		// The reply goes out before the daemon starts to go.
		http.NewResponseController(w).Flush()
		d.Down()
	})
	return mux
}

// AuthenticateRequest is the body of POST /v1/authenticate.
type AuthenticateRequest struct {
	JoinKey string `json:"join_key"`
}

func (d *Daemon) handleAuthenticate(w http.ResponseWriter, r *http.Request) {
	if !isRoot(r) {
		reply(w, http.StatusForbidden, errorBody{"authenticating the node needs root: run wire up with sudo"})
		return
	}
	var req AuthenticateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.JoinKey == "" {
		reply(w, http.StatusBadRequest, errorBody{`want {"join_key": "wire1-…"}`})
		return
	}
	if err := d.Authenticate(r.Context(), req.JoinKey); err != nil {
		reply(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	reply(w, http.StatusOK, d.Status(r.Context()))
}

// PingRequest is the body of POST /v1/ping. With Stream, the answer is
// a line of JSON per echo request as it ends ({"reply": PingReply}), then
// one with the result ({"result": PingResult}) or {"error": "..."}.
type PingRequest struct {
	Target    string `json:"target"`
	Count     int    `json:"count"`
	TimeoutMs int    `json:"timeout_ms"`
	Stream    bool   `json:"stream,omitempty"`
}

// pingLine is a line of a ping stream.
type pingLine struct {
	Reply  *PingReply  `json:"reply,omitempty"`
	Result *PingResult `json:"result,omitempty"`
	Error  string      `json:"error,omitempty"`
}

func (d *Daemon) handlePing(w http.ResponseWriter, r *http.Request) {
	var req PingRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.Target == "" {
		reply(w, http.StatusBadRequest, errorBody{"want {\"target\": NAME or VPN IP}"})
		return
	}
	req.Count = min(max(req.Count, 1), 100)
	timeout := time.Duration(min(max(req.TimeoutMs, 100), 10000)) * time.Millisecond
	if req.TimeoutMs == 0 {
		timeout = 2 * time.Second
	}
	var each func(PingReply)
	streaming := false
	enc := json.NewEncoder(w)
	if req.Stream {
		each = func(rep PingReply) {
			if !streaming {
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.WriteHeader(http.StatusOK)
				streaming = true
			}
			enc.Encode(pingLine{Reply: &rep})
			http.NewResponseController(w).Flush()
		}
	}
	res, err := d.Ping(r.Context(), req.Target, req.Count, timeout, each)
	switch {
	case streaming && err != nil:
		enc.Encode(pingLine{Error: err.Error()})
	case streaming:
		enc.Encode(pingLine{Result: &res})
	case errors.Is(err, ErrUnknownPeer), errors.Is(err, ErrPeerOffline):
		reply(w, http.StatusNotFound, errorBody{err.Error()})
	case err != nil:
		reply(w, http.StatusInternalServerError, errorBody{err.Error()})
	default:
		reply(w, http.StatusOK, res)
	}
}

type errorBody struct {
	Error string `json:"error"`
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Client talks to a daemon's control socket: one code path behind the
// CLI and MCP.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client for the daemon whose state dir is dir.
func NewClient(dir string) *Client {
	path := filepath.Join(dir, SocketFile)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", path)
	}}
	return &Client{path: path, http: &http.Client{Transport: tr}}
}

// ErrNotRunning says no daemon answers on the socket.
var ErrNotRunning = errors.New("the wire daemon is not running")

// Status asks for the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Peers asks for the configured peers.
func (c *Client) Peers(ctx context.Context) ([]PeerStatus, error) {
	var resp struct {
		Peers []PeerStatus `json:"peers"`
	}
	return resp.Peers, c.do(ctx, http.MethodGet, "/v1/peers", nil, &resp)
}

// Ping pings a peer over the tunnel.
func (c *Client) Ping(ctx context.Context, req PingRequest) (PingResult, error) {
	var res PingResult
	return res, c.do(ctx, http.MethodPost, "/v1/ping", req, &res)
}

// PingStream pings a peer over the tunnel, and hears of each echo
// request's outcome as it comes.
func (c *Client) PingStream(ctx context.Context, req PingRequest, each func(PingReply)) (PingResult, error) {
	req.Stream = true
	b, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://wire/v1/ping", bytes.NewReader(b))
	if err != nil {
		return PingResult{}, err
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return PingResult{}, c.reachError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/x-ndjson" {
		var res PingResult
		return res, decodeReply(resp, &res)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var line pingLine
		if err := dec.Decode(&line); err != nil {
			return PingResult{}, fmt.Errorf("the daemon's ping answer broke off: %w", err)
		}
		switch {
		case line.Reply != nil:
			each(*line.Reply)
		case line.Result != nil:
			return *line.Result, nil
		default:
			return PingResult{}, errors.New(line.Error)
		}
	}
}

// Authenticate has the daemon authenticate its node again with a join
// key, as a node whose enrolment expired must, and returns its status.
func (c *Client) Authenticate(ctx context.Context, joinKey string) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodPost, "/v1/authenticate", AuthenticateRequest{JoinKey: joinKey}, &st)
}

// Down stops the daemon and removes its interface.
func (c *Client) Down(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/down", struct{}{}, nil)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://wire"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.reachError(ctx, err)
	}
	defer resp.Body.Close()
	return decodeReply(resp, out)
}

func (c *Client) reachError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w (no answer on %s): start it with sudo wire up", ErrNotRunning, c.path)
}

// decodeReply decodes a control API answer into out (which may be nil),
// or returns the error it carries.
func decodeReply(resp *http.Response, out any) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 400 {
		var e errorBody
		json.Unmarshal(b, &e)
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
