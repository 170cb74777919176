package server

import (
	"testing"
	"time"
)

// Attempts count per pair until the pair is forgotten, which an attempt
// notices even before the sweep has removed it; the sweep runs at most
// once per punchForget/10, not at every attempt.
func TestPunchesForget(t *testing.T) {
	now := time.Unix(1e9, 0)
	p := newPunches(func() time.Time { return now })
	for i := 1; i <= RelayAfter; i++ {
		if got := p.attempt("a", "b"); got.Attempts != i || got.UseRelay != (i >= RelayAfter) {
			t.Fatalf("attempt %d: %+v", i, got)
		}
	}
	p.attempt("c", "d")
	now = now.Add(punchForget + time.Second)
	p.swept = now // as if swept just now: a and b's count is stale, not gone
	if got := p.attempt("a", "b"); got.Attempts != 1 || got.UseRelay {
		t.Errorf("after punchForget: %+v, want a fresh count", got)
	}
	now = now.Add(punchForget / 10)
	p.attempt("a", "b")
	if _, ok := p.m[[2]string{"c", "d"}]; ok {
		t.Error("a pair not heard of for punchForget was not swept")
	}
}
