package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A client of several servers goes on to the next while one cannot be
// reached or cannot serve, stays with the one that answered, and takes a
// refusal as the answer.
func TestClientFailover(t *testing.T) {
	var hits [3]atomic.Int32
	serve := func(i, code int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			w.WriteHeader(code)
			w.Write([]byte(`{"ok":true,"error":"refused"}`))
		}))
		t.Cleanup(s.Close)
		return s
	}
	// A port nothing listens on: connection refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	busy := serve(0, http.StatusServiceUnavailable)
	good := serve(1, http.StatusOK)
	c, err := NewClient(ClientConfig{URL: dead, Others: []string{busy.URL, good.URL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Health(ctx); err != nil {
		t.Fatalf("through a dead and a busy server to a good one: %v", err)
	}
	if c.URL() != good.URL {
		t.Errorf("in use after failover: %s, want %s", c.URL(), good.URL)
	}
	if _, err := c.Health(ctx); err != nil || hits[0].Load() != 1 || hits[1].Load() != 2 {
		t.Errorf("second request: %v; busy server asked %d times, good %d (want 1 and 2: the good one is kept)", err, hits[0].Load(), hits[1].Load())
	}

	// A refusal (401) is an answer: the next server is not asked.
	refusing := serve(2, http.StatusUnauthorized)
	c, _ = NewClient(ClientConfig{URL: refusing.URL, Others: []string{good.URL}})
	before := hits[1].Load()
	if _, err := c.Health(ctx); err == nil || hits[1].Load() != before {
		t.Errorf("after a 401: %v, and the other server was asked %d times", err, hits[1].Load()-before)
	}

	// Every server down: the last error says which could not be reached.
	c, _ = NewClient(ClientConfig{URL: dead, Others: []string{dead + "0"}})
	if _, err := c.Health(ctx); err == nil {
		t.Error("no server answers, yet no error")
	}
	if _, err := NewClient(ClientConfig{URL: good.URL, Others: []string{"https://example.invalid:8787"}}); err == nil {
		t.Error("a mesh of http and https servers was accepted")
	}
}

// A server that accepts connections but does not answer is left for the
// next request, once it has taken all the time the caller gave.
func TestClientLeavesSilentServer(t *testing.T) {
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(silent.Close)
	t.Cleanup(func() { close(release) })
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"ok":true}`)) }))
	t.Cleanup(good.Close)
	c, _ := NewClient(ClientConfig{URL: silent.URL, Others: []string{good.URL}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Health(ctx); err == nil {
		t.Fatal("a server that never answered answered")
	}
	if c.URL() != good.URL {
		t.Errorf("after the silent server took all the time: %s in use, want %s", c.URL(), good.URL)
	}
	if _, err := c.Health(context.Background()); err != nil {
		t.Errorf("the next request: %v", err)
	}
}

// A server that says when to come back is heard: the error carries its
// Retry-After.
func TestRetryAfter(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"busy"}`))
	}))
	t.Cleanup(busy.Close)
	c, _ := NewClient(ClientConfig{URL: busy.URL})
	_, err := c.Health(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || se.RetryAfter != 7*time.Second {
		t.Errorf("a 503 with Retry-After: 7: %#v", err)
	}
}
