package server_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server"
	"github.com/wire-mesh/wire/server/servertest"
)

// logBuffer is a server log, at the level wire server logs by default.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func withLog(l *logBuffer) servertest.Option {
	return func(c *server.Config) { c.Logger = slog.New(slog.NewTextHandler(l, nil)) }
}

// A handler's panic is answered with a JSON 500, counted, and logged as a
// warning with its route and no secrets; the server goes on.
func TestPanicLoggedAndCounted(t *testing.T) {
	var log logBuffer
	env := servertest.Start(t, "", withLog(&log))
	h := env.Guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		var m map[string]int
		m["boom"]++ // a nil map: the kind of bug that hid in UpdateIdentity
	}))
	req := httptest.NewRequest("POST", "/register", strings.NewReader(`{"join_key":"wire1-secret"}`))
	req.Header.Set("Authorization", "Bearer admin-secret")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e api.Error
	if rec.Code != 500 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
		t.Errorf("answer = %d %s, want a JSON 500", rec.Code, rec.Body)
	}
	logged := log.String()
	if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, "handler panicked") || !strings.Contains(logged, "path=/register") {
		t.Errorf("log:\n%s\nwant a warning naming the route", logged)
	}
	if strings.Contains(logged, "secret") {
		t.Errorf("the log holds a secret:\n%s", logged)
	}
	if st := env.Stats(); st.Panics != 1 {
		t.Errorf("panics counted: %d, want 1", st.Panics)
	}
	if _, err := env.Client(t, nil).Health(ctx); err != nil {
		t.Errorf("after the panic: %v", err)
	}
}

// Failed TLS handshakes are counted and logged as warnings, at most a
// burst and then one a second however many there are.
func TestTLSHandshakeErrorsLogged(t *testing.T) {
	var log logBuffer
	env := servertest.Start(t, "", withLog(&log))
	const n = 50
	for range n {
		c, err := tls.Dial("tcp", env.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
		if err == nil {
			c.Close()
			t.Fatal("a TLS 1.2 handshake succeeded")
		}
	}
	for i := 0; i < 50 && env.Stats().TLSHandshakeErrors < n; i++ {
		time.Sleep(20 * time.Millisecond) // the server logs after the client gave up
	}
	if got := env.Stats().TLSHandshakeErrors; got != n {
		t.Errorf("handshake errors counted: %d, want %d", got, n)
	}
	lines := strings.Count(log.String(), "TLS handshake error")
	if lines == 0 || lines > 12 || !strings.Contains(log.String(), "level=WARN") {
		t.Errorf("%d warnings logged for %d failed handshakes, want some and at most the burst:\n%s", lines, n, log.String())
	}
}
