package api

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// A server that accepts connections and never answers gets a message that
// says so, not a bare "context deadline exceeded"; the deadline is still
// what errors.Is finds.
func TestHungServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held, unanswered, until the test ends
		}
	}()
	c, err := NewClient(ClientConfig{URL: "https://" + ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Health(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer in time") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("err = %v, want one that names the server and says it did not answer", err)
	}
}
