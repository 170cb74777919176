package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// session is Serve on pipes, with the client's side for the test.
type session struct {
	t      *testing.T
	in     *io.PipeWriter
	lines  chan []byte
	served chan error
}

func serve(t *testing.T) *session {
	t.Helper()
	s := New(Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ss := &session{t: t, in: inW, lines: make(chan []byte, 64), served: make(chan error, 1)}
	go func() { ss.served <- s.Serve(context.Background(), inR, outW); outW.Close() }()
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			ss.lines <- bytes.Clone(sc.Bytes())
		}
		close(ss.lines)
	}()
	t.Cleanup(func() { inW.Close() })
	return ss
}

func (s *session) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// next returns the next line the server wrote, skipping notifications.
func (s *session) next() string {
	s.t.Helper()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatal("the server's output ended")
			}
			if bytes.Contains(l, []byte(`"method":"notifications/`)) {
				continue
			}
			return string(l)
		case <-time.After(5 * time.Second):
			s.t.Fatal("no answer within 5s")
		}
	}
}

// nothing checks that the server writes nothing (but notifications) for a
// while.
func (s *session) nothing(d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l := <-s.lines:
			if !bytes.Contains(l, []byte(`"method":"notifications/`)) {
				s.t.Errorf("unexpected answer: %s", l)
			}
		case <-deadline:
			return
		}
	}
}

func (s *session) initialize(version string) {
	s.t.Helper()
	s.send(`{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"` + version + `","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if got := s.next(); !strings.Contains(got, `"protocolVersion":"`+version+`"`) {
		s.t.Fatalf("initialize: %s", got)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
}

// answer decodes a line into its id and error code (0 for a result).
func answer(t *testing.T, line string) (id string, code int) {
	t.Helper()
	var m struct {
		ID    json.RawMessage `json:"id"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("not a JSON-RPC message: %s", line)
	}
	if m.Error != nil {
		code = m.Error.Code
	}
	return string(m.ID), code
}

// Ids come back exactly as they were sent; ids MCP does not allow are
// refused with the spec's code, echoing the id where it is a scalar.
func TestIDsEchoedExactly(t *testing.T) {
	s := serve(t)
	s.initialize("2025-06-18")
	for _, tt := range []struct {
		id, want string
		code     int
	}{
		{`9007199254740993`, `9007199254740993`, 0}, // 2^53+1
		{`123456789012345678901234567890`, `123456789012345678901234567890`, 0},
		{`-7`, `-7`, 0},
		{`"a string id"`, `"a string id"`, 0},
		{`1.5`, `1.5`, -32600},
		{`1e3`, `1e3`, -32600},
		{`true`, `null`, -32600},
		{`{"x":1}`, `null`, -32600},
	} {
		s.send(`{"jsonrpc":"2.0","id":` + tt.id + `,"method":"tools/list"}`)
		id, code := answer(t, s.next())
		if id != tt.want || code != tt.code {
			t.Errorf("id %s: answered with id %s, code %d; want %s, %d", tt.id, id, code, tt.want, tt.code)
		}
	}
}

// Before initialize, a request gets Invalid Request (-32600), not code 0;
// a message whose method is not a string keeps its id.
func TestSpecCodes(t *testing.T) {
	s := serve(t)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if id, code := answer(t, s.next()); id != "1" || code != -32600 {
		t.Errorf("tools/list before initialize: id %s code %d, want 1, -32600", id, code)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	if id, code := answer(t, s.next()); id != "2" || code != 0 {
		t.Errorf("ping before initialize: id %s code %d, want an answer", id, code)
	}
	s.initialize("2025-06-18")
	s.send(`{"id":9,"method":5}`)
	if id, code := answer(t, s.next()); id != "9" || code != -32600 {
		t.Errorf(`{"id":9,"method":5}: id %s code %d, want 9, -32600`, id, code)
	}
	s.send(`{"jsonrpc":"2.0","id":10,"method":5}`)
	if id, code := answer(t, s.next()); id != "10" || code != -32600 {
		t.Errorf(`method 5: id %s code %d, want 10, -32600`, id, code)
	}
	s.send(`{"jsonrpc":"2.0","id":11,"method":"tools/list"}`)
	if id, code := answer(t, s.next()); id != "11" || code != 0 {
		t.Errorf("the session after bad input: id %s code %d", id, code)
	}
}

// 2025-03-26 has batches, and servers must take them: the answers come
// back as one array, notifications get none, a bad element gets its error
// in the array. 2025-06-18 removed them.
func TestBatches(t *testing.T) {
	s := serve(t)
	s.initialize("2025-03-26")
	s.send(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/roots/list_changed"},{"jsonrpc":"2.0","id":"two","method":"ping"},{"jsonrpc":"2.0","id":3,"method":7}]`)
	var arr []json.RawMessage
	line := s.next()
	if err := json.Unmarshal([]byte(line), &arr); err != nil || len(arr) != 3 {
		t.Fatalf("batch answer %s: want an array of 3", line)
	}
	ids := map[string]int{}
	for _, a := range arr {
		id, code := answer(t, string(a))
		ids[id] = code
	}
	if len(ids) != 3 || ids["1"] != 0 || ids[`"two"`] != 0 || ids["3"] != -32600 {
		t.Errorf("batch answers by id and code: %v", ids)
	}
	s.send(`[{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]`)
	s.nothing(300 * time.Millisecond)
	s.send(`[]`)
	if id, code := answer(t, s.next()); id != "null" || code != -32600 {
		t.Errorf("empty batch: id %s code %d", id, code)
	}

	s2 := serve(t)
	s2.initialize("2025-06-18")
	s2.send(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`)
	if line := s2.next(); !strings.Contains(line, "-32600") || !strings.Contains(line, "2025-06-18") {
		t.Errorf("a batch in 2025-06-18: %s", line)
	}
	s2.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if id, code := answer(t, s2.next()); id != "2" || code != 0 {
		t.Errorf("the 2025-06-18 session after a batch: id %s code %d", id, code)
	}
}

// The answer to a request the client cancelled is not sent; the stream
// maps the cancellation to the id the SDK knows.
func TestCancelledGetsNoAnswer(t *testing.T) {
	pr, pw := io.Pipe()
	var out syncBuffer
	st := newStream(&out, pw)
	sdkSide := bufio.NewReader(pr)
	go st.inbound([]byte(`{"jsonrpc":"2.0","id":"init","method":"initialize","params":{}}`))
	forwarded, _ := sdkSide.ReadBytes('\n')
	var m map[string]json.RawMessage
	json.Unmarshal(forwarded, &m)
	ours := m["id"]
	go st.inbound([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}`))
	forwarded, _ = sdkSide.ReadBytes('\n')
	json.Unmarshal(forwarded, &m)
	call := m["id"]
	go st.inbound([]byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}`))
	forwarded, _ = sdkSide.ReadBytes('\n')
	if !bytes.Contains(forwarded, call) {
		t.Errorf("the cancellation went on as %s; want it about %s", forwarded, call)
	}
	st.Write([]byte(`{"jsonrpc":"2.0","id":` + string(ours) + `,"result":{"protocolVersion":"2025-06-18"}}` + "\n"))
	st.Write([]byte(`{"jsonrpc":"2.0","id":` + string(call) + `,"result":{"content":[],"isError":true}}` + "\n"))
	if got := out.String(); strings.Contains(got, `"id":7`) || !strings.Contains(got, `"id":"init"`) {
		t.Errorf("the client got:\n%s\nwant the initialize answer and nothing for the cancelled request", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Input that ends with requests in flight still gets their answers:
// printf '<initialize>\n<initialized>\n<tools/list>\n' | wire mcp.
func TestAnswersBeforeEOF(t *testing.T) {
	s := New(Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	in := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}
{"jsonrpc":"2.0","method":"notifications/initialized"}
{"jsonrpc":"2.0","id":2,"method":"tools/list"}
`)
	var out syncBuffer
	if err := s.Serve(context.Background(), in, &out); err != nil {
		t.Logf("Serve: %v", err)
	}
	if got := out.String(); !strings.Contains(got, `"id":1,`) || !strings.Contains(got, `"id":2,`) || !strings.Contains(got, `"wire_status"`) {
		t.Errorf("stdout:\n%s\nwant the answers to initialize and tools/list", got)
	}
}

// A session that ends leaves no goroutine behind, also while its input
// stays open.
func TestServeLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		inR, inW := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		s := New(Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
		go func() { done <- s.Serve(ctx, inR, io.Discard) }()
		io.WriteString(inW, `{"jsonrpc":"2.0","id":1,"method":"ping"}`+"\n")
		time.Sleep(20 * time.Millisecond)
		cancel() // the session ends; the input is still open
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return after its context ended")
		}
		_ = inW // never closed by the test
	}
	for deadline := time.Now().Add(3 * time.Second); runtime.NumGoroutine() > before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}
