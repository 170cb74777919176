package agent

import (
	"context"
	"fmt"
	"testing"
)

func TestPrune(t *testing.T) {
	s, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ctx := context.Background()
	for i := range 30 {
		s.receive(ctx, stored{EventID: fmt.Sprint("in", i), NodeID: "p", Kind: "k", Body: "1", Raw: "{}", At: int64(i)})
		seq, _ := s.queue(ctx, stored{EventID: fmt.Sprint("out", i), NodeID: "p", Kind: "k", Body: "1", At: int64(i)})
		if i%2 == 0 {
			s.settle(ctx, seq, Delivered, "")
		}
	}
	for _, dir := range []string{"in", "out"} {
		if err := s.prune(ctx, dir, 10); err != nil {
			t.Fatal(err)
		}
	}
	in, _ := s.tail(ctx, "in", "", 0, 100)
	if len(in) != 10 || in[0].EventID != "in20" {
		t.Errorf("inbox after pruning to 10: %d events from %s", len(in), in[0].EventID)
	}
	queued, _ := s.queued(ctx, "")
	if len(queued) != 15 {
		t.Errorf("%d queued events left; pruning must keep all 15", len(queued))
	}
	out, _ := s.tail(ctx, "out", "", 0, 100)
	delivered := 0
	for _, e := range out {
		if e.Status == Delivered {
			delivered++
		}
	}
	if delivered > 10 {
		t.Errorf("%d delivered events kept, want at most 10", delivered)
	}
}
