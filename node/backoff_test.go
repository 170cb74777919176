package node

import (
	"context"
	"testing"
	"time"
)

// A backoff doubles up to its cap, each wait in the upper half of its
// step, and starts again after a reset.
func TestBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the waits return at once; their lengths are still drawn
	b := backoff{first: time.Second, cap: 4 * time.Second}
	for _, step := range []time.Duration{1, 2, 4, 4, 4} {
		step *= time.Second
		if got := b.wait(ctx); got < step/2 || got > step {
			t.Errorf("a wait of step %v was %v", step, got)
		}
	}
	b.reset()
	b.atLeast(30 * time.Second)
	if got := b.wait(ctx); got < 30*time.Second || got > 60*time.Second {
		t.Errorf("after atLeast(30s): %v, want 30-60 s: never less than asked", got)
	}
	if b.next != 60*time.Second {
		t.Errorf("above its cap, a backoff stays where atLeast put it: next %v", b.next)
	}
}
