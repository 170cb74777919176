package server_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

// TestFullAnswersShedPolitely: while every turn to write a full answer is
// taken, a poll that needs one waits for a turn, then is told to come back
// (503, Retry-After 2-6 s) and counted; a delta is served meanwhile; once
// turns are free, the same poll gets its full answer.
func TestFullAnswersShedPolitely(t *testing.T) {
	env := servertest.Start(t, "")
	_, c, _ := enrol(t, env, "n1")
	_, c2, _ := enrol(t, env, "n2")
	first, err := c.Peers(ctx, "0", 0)
	if err != nil || !first.Full {
		t.Fatalf("first poll: %+v, %v", first, err)
	}

	release := env.TakeFullAnswers(200 * time.Millisecond)
	start := time.Now()
	_, err = c2.Peers(ctx, "0", 0)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || se.RetryAfter < 2*time.Second || se.RetryAfter > 6*time.Second {
		t.Errorf("a full poll with no turn free: %v; want 503 with a Retry-After of 2-6 s", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("shed after %v, before waiting for a turn", waited)
	}
	if got := env.Stats().ShedFull; got != 1 {
		t.Errorf("ShedFull = %d, want 1", got)
	}
	if delta, err := c.Peers(ctx, first.Version, 0); err != nil || delta.Full {
		t.Errorf("a delta while full answers are shed: %+v, %v; want it served", delta, err)
	}
	release()
	if full, err := c2.Peers(ctx, "0", 0); err != nil || !full.Full || len(full.Peers) != 2 {
		t.Errorf("the same poll with turns free: %+v, %v; want the full map", full, err)
	}
}
