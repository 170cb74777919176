package mcp

import (
	"context"
	"encoding/json"
	"io"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Serve serves one session of newline-delimited JSON-RPC on in and out,
// through a stream (see stream) that answers what the SDK would mishandle.
// When the session ends, Serve stops reading in: it sets a read deadline
// if in has one (os.Stdin on a pipe does), or else closes it if it can,
// so that no goroutine is left waiting on it.
func (s *Server) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	pr, pw := io.Pipe()
	st := newStream(out, pw)
	read := make(chan struct{})
	go func() { defer close(read); st.read(in) }()
	err := s.Run(ctx, &sdk.IOTransport{Reader: pr, Writer: st})
	pr.Close()
	if stopReading(in) {
		<-read
	}
	return err
}

// stopReading makes a Read of in that waits return, and reports whether it
// could: a read deadline, else Close. A terminal or regular file that is
// neither leaves the reader to end with the input.
func stopReading(in io.Reader) bool {
	if r, ok := in.(interface{ SetReadDeadline(time.Time) error }); ok && r.SetReadDeadline(time.Now()) == nil {
		return true
	}
	if r, ok := in.(io.Closer); ok && r.Close() == nil {
		return true
	}
	return false
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

func errorLine(id json.RawMessage, code int, msg string) []byte {
	e := rpcError{JSONRPC: "2.0", ID: id}
	if e.ID == nil {
		e.ID = json.RawMessage("null")
	}
	e.Error.Code, e.Error.Message = code, msg
	b, _ := json.Marshal(e)
	return append(b, '\n')
}
