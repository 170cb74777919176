package mcp

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// stream is the JSON-RPC stream between the client and the SDK's session.
// It does for the session what the SDK would get wrong:
//
//   - It answers lines that are not JSON-RPC 2.0 messages itself, with the
//     spec's codes and the request's id where there is one: the SDK would
//     end the session.
//   - It gives each of the client's requests an id of its own, and the
//     client's back on the answer: the SDK keeps ids as int64, rounding
//     fractions and integers past 2^53 and wrapping longer ones, so an id
//     comes back exactly as it went only this way.
//   - It drops the answer to a request the client cancelled, which the
//     spec says the server should not send.
//   - It answers requests sent before initialize.
//   - It takes batches where the session's protocol version has them
//     (2025-03-26 and before), sending their messages on one at a time and
//     their answers back as one array.
//   - When the client's input ends, it waits for the answers to what was
//     read before it lets the session end.
type stream struct {
	out   io.Writer // the client's: one message a Write
	toSDK *io.PipeWriter

	outMu sync.Mutex // one message at a time on out

	mu       sync.Mutex
	seq      uint64
	calls    map[string]*call // by the id the SDK sees
	byClient map[string]string
	initID   string // the SDK's id of the initialize request
	inited   bool   // initialize has been sent
	version  string // the protocol version the session agreed on
	idle     chan struct{}
}

// call is a client's request in flight.
type call struct {
	clientID  json.RawMessage
	cancelled bool
	batch     *batch
}

// batch gathers the answers to one batch of the client's.
type batch struct {
	pending int
	answers []json.RawMessage
}

// drainTimeout bounds how long the end of the input waits for answers.
const drainTimeout = 2 * time.Minute

// idPrefix marks the ids the stream gives requests.
const idPrefix = "wire-"

func newStream(out io.Writer, toSDK *io.PipeWriter) *stream {
	return &stream{out: out, toSDK: toSDK, calls: map[string]*call{}, byClient: map[string]string{}}
}

// read passes the client's messages from in to the SDK until in ends, then
// waits for the answers in flight and closes the SDK's input.
func (s *stream) read(in io.Reader) {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if msg := bytes.TrimSpace(line); len(msg) > 0 {
			if werr := s.inbound(msg); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				s.drain(drainTimeout)
			}
			s.toSDK.CloseWithError(err)
			return
		}
	}
}

// inbound takes one line from the client.
func (s *stream) inbound(line []byte) error {
	if !json.Valid(line) {
		s.reply(errorLine(nil, codeParse, "parse error: the line is not JSON"))
		return nil
	}
	if line[0] == '[' {
		return s.inboundBatch(line)
	}
	msg, answer := s.accept(line, nil)
	if answer != nil {
		s.reply(answer)
		return nil
	}
	return s.forward(msg)
}

func (s *stream) forward(msg []byte) error {
	_, err := s.toSDK.Write(append(msg, '\n'))
	return err
}

// inboundBatch takes a batch: its messages go on one at a time, and the
// answers come back as one array once all are in.
func (s *stream) inboundBatch(line []byte) error {
	var elems []json.RawMessage
	json.Unmarshal(line, &elems)
	s.mu.Lock()
	version := s.version
	s.mu.Unlock()
	switch {
	case len(elems) == 0:
		s.reply(errorLine(nil, codeInvalidRequest, "invalid request: an empty batch"))
		return nil
	case version == "" || version >= "2025-06-18":
		s.reply(errorLine(nil, codeInvalidRequest, fmt.Sprintf("invalid request: batches are not part of protocol version %s (they were until 2025-03-26)", cmp.Or(version, "(none yet: initialize first)"))))
		return nil
	}
	b := &batch{}
	var forward [][]byte
	for _, e := range elems {
		msg, answer := s.accept(e, b)
		switch {
		case answer != nil:
			b.answers = append(b.answers, bytes.TrimSpace(answer))
		case msg != nil:
			forward = append(forward, msg)
		}
	}
	s.mu.Lock()
	done := b.pending == 0
	s.mu.Unlock()
	if done && len(b.answers) > 0 {
		s.replyBatch(b)
	}
	for _, msg := range forward {
		if err := s.forward(msg); err != nil {
			return err
		}
	}
	return nil
}

// accept checks one message of the client's, and returns it as the SDK is
// to see it, or the error answer it gets here instead.
func (s *stream) accept(raw []byte, b *batch) (msg, answer []byte) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil, errorLine(nil, codeInvalidRequest, "invalid request: want a JSON-RPC 2.0 object")
	}
	id, hasID := m["id"]
	echo := id
	if !hasID || !validID(id) {
		echo = nil
	}
	var version string
	if json.Unmarshal(m["jsonrpc"], &version) != nil || version != "2.0" {
		return nil, errorLine(echo, codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
	}
	if hasID && !validID(id) {
		return nil, errorLine(idIfScalar(id), codeInvalidRequest, `invalid request: "id" must be a string or an integer`)
	}
	rawMethod, hasMethod := m["method"]
	var method string
	if hasMethod && json.Unmarshal(rawMethod, &method) != nil {
		return nil, errorLine(echo, codeInvalidRequest, `invalid request: "method" must be a string`)
	}
	_, result := m["result"]
	_, failure := m["error"]
	switch {
	case hasMethod && hasID:
		return s.acceptRequest(m, method, b)
	case hasMethod:
		return s.acceptNotification(m, method), nil
	case hasID && (result || failure):
		return raw, nil // the answer to a request of the server's
	}
	return nil, errorLine(echo, codeInvalidRequest, `invalid request: a request needs a "method"`)
}

// acceptRequest gives a request an id of the stream's own, remembering the
// client's, or answers it if the session is not initialized.
func (s *stream) acceptRequest(m map[string]json.RawMessage, method string, b *batch) ([]byte, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inited && method != "initialize" && method != "ping" {
		return nil, errorLine(m["id"], codeInvalidRequest, "invalid request: the session is not initialized: send initialize first")
	}
	s.seq++
	ours := idPrefix + strconv.FormatUint(s.seq, 10)
	s.calls[ours] = &call{clientID: m["id"], batch: b}
	s.byClient[canonical(m["id"])] = ours
	if b != nil {
		b.pending++
	}
	if method == "initialize" {
		s.inited, s.initID = true, ours
	}
	m["id"] = json.RawMessage(strconv.Quote(ours))
	out, _ := json.Marshal(m)
	return out, nil
}

// acceptNotification passes a notification on; a cancellation is about the
// request by its id here, and its answer is not to be sent.
func (s *stream) acceptNotification(m map[string]json.RawMessage, method string) []byte {
	if method != "notifications/cancelled" {
		out, _ := json.Marshal(m)
		return out
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(m["params"], &params) == nil {
		s.mu.Lock()
		if ours, ok := s.byClient[canonical(params["requestId"])]; ok {
			s.calls[ours].cancelled = true
			params["requestId"] = json.RawMessage(strconv.Quote(ours))
			m["params"], _ = json.Marshal(params)
		}
		s.mu.Unlock()
	}
	out, _ := json.Marshal(m)
	return out
}

// Write takes a message from the SDK, one per call, for the client.
func (s *stream) Write(p []byte) (int, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(p, &m) != nil || m["method"] != nil {
		return s.write(p)
	}
	var ours string
	if json.Unmarshal(m["id"], &ours) != nil {
		return s.write(p)
	}
	s.mu.Lock()
	c, ok := s.calls[ours]
	if !ok {
		s.mu.Unlock()
		return s.write(p)
	}
	delete(s.calls, ours)
	delete(s.byClient, canonical(c.clientID))
	if ours == s.initID {
		var res struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		json.Unmarshal(m["result"], &res)
		s.version = res.ProtocolVersion
	}
	if len(s.calls) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	m["id"] = c.clientID
	answer, _ := json.Marshal(m)
	var complete *batch
	if c.batch != nil && !c.cancelled {
		c.batch.answers = append(c.batch.answers, answer)
	}
	if c.batch != nil {
		if c.batch.pending--; c.batch.pending == 0 && len(c.batch.answers) > 0 {
			complete = c.batch
		}
	}
	s.mu.Unlock()
	switch {
	case complete != nil:
		s.replyBatch(complete)
	case c.cancelled || c.batch != nil:
		// The client cancelled it: the spec says no answer. A batch's
		// answers go out together.
	default:
		s.write(append(answer, '\n'))
	}
	return len(p), nil
}

// Close is the SDK's end of the session: out is the caller's to close.
func (s *stream) Close() error { return nil }

func (s *stream) write(p []byte) (int, error) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.out.Write(p)
}

// reply sends an answer of the stream's own.
func (s *stream) reply(line []byte) { s.write(line) }

func (s *stream) replyBatch(b *batch) {
	s.mu.Lock()
	arr, _ := json.Marshal(b.answers)
	s.mu.Unlock()
	s.write(append(arr, '\n'))
}

// drain waits, at most timeout, until every request read has its answer.
func (s *stream) drain(timeout time.Duration) {
	s.mu.Lock()
	if len(s.calls) == 0 {
		s.mu.Unlock()
		return
	}
	s.idle = make(chan struct{})
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
	case <-time.After(timeout):
	}
}

// integerID is what a numeric id must look like: MCP's ids are strings or
// integers.
var integerID = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

func validID(id json.RawMessage) bool {
	id = bytes.TrimSpace(id)
	if len(id) == 0 {
		return false
	}
	if id[0] == '"' {
		var s string
		return json.Unmarshal(id, &s) == nil
	}
	return integerID.Match(id)
}

// idIfScalar is an invalid id to echo in its error answer, if it is at
// least a number or a string; null otherwise.
func idIfScalar(id json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(id, &v) == nil {
		switch v.(type) {
		case string, float64:
			return id
		}
	}
	return nil
}

// canonical is an id as a map key: its JSON, without surrounding space.
func canonical(id json.RawMessage) string { return string(bytes.TrimSpace(id)) }
