package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Serve serves one session of newline-delimited JSON-RPC on in and out.
// A line that is not JSON, or not a JSON-RPC 2.0 message, gets an error
// response here and never reaches the SDK, which would end the session.
func (s *Server) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	w := &lockedWriter{w: out}
	return s.Run(ctx, &sdk.IOTransport{Reader: filterLines(in, w), Writer: w})
}

// lockedWriter writes whole messages, one Write at a time.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *lockedWriter) Close() error { return nil }

// filterLines passes on the lines of in that are JSON-RPC messages and
// answers the others on w.
func filterLines(in io.Reader, w io.Writer) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		r := bufio.NewReaderSize(in, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if msg := bytes.TrimSpace(line); len(msg) > 0 {
				if reply := screen(msg); reply != nil {
					w.Write(reply)
				} else if _, werr := pw.Write(append(msg, '\n')); werr != nil {
					return
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// rpcError is a JSON-RPC error response.
type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Standard JSON-RPC error codes.
const (
	codeParse          = -32700
	codeInvalidRequest = -32600
)

// screen returns the error response for a line that is not a JSON-RPC 2.0
// message, or nil.
func screen(line []byte) []byte {
	if !json.Valid(line) {
		return errorLine(nil, codeParse, "parse error: the line is not JSON")
	}
	var m struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  *string         `json:"method"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return errorLine(nil, codeInvalidRequest, "invalid request: want one JSON-RPC 2.0 object per line (batches are not supported)")
	}
	id := m.ID
	if err := checkMessage(m.JSONRPC, id, m.Method != nil, m.Result != nil || m.Error != nil); err != nil {
		if !validID(id) {
			id = nil
		}
		return errorLine(id, codeInvalidRequest, "invalid request: "+err.Error())
	}
	return nil
}

func checkMessage(version string, id json.RawMessage, method, response bool) error {
	switch {
	case version != "2.0":
		return errors.New(`"jsonrpc" must be "2.0"`)
	case id != nil && !validID(id):
		return errors.New(`"id" must be a string or a number`)
	case !method && !response:
		return errors.New(`a request needs a "method"`)
	}
	return nil
}

func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	var v any
	if json.Unmarshal(id, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

func errorLine(id json.RawMessage, code int, msg string) []byte {
	e := rpcError{JSONRPC: "2.0", ID: id}
	if e.ID == nil {
		e.ID = json.RawMessage("null")
	}
	e.Error.Code, e.Error.Message = code, msg
	b, _ := json.Marshal(e)
	return append(b, '\n')
}
