package agent

import (
	"crypto/ed25519"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/event"
)

func keyString(n *testNode) string { return event.EncodeKey(n.key.Public().(ed25519.PublicKey)) }

// pairUp runs the protocol to sas_ready: a initiates, b joins.
func pairUp(t *testing.T, a, b *testNode, peerOfA string) (id string, sasA, sasB string) {
	t.Helper()
	offer, err := a.Initiate(ctx, peerOfA)
	if err != nil || offer.State != PairOffered || !codeRE.MatchString(offer.Code) {
		t.Fatalf("Initiate = %+v, %v", offer, err)
	}
	joined, err := b.Join(ctx, " "+strings.ToUpper(offer.Code)+" ")
	if err != nil || joined.State != PairSASReady || len(joined.SAS) != 6 {
		t.Fatalf("Join = %+v, %v", joined, err)
	}
	st, _ := a.Check(offer.SessionID)
	if st.State != PairSASReady {
		t.Fatalf("initiator after the join: %+v", st)
	}
	return offer.SessionID, st.SAS, joined.SAS
}

func TestPairing(t *testing.T) {
	for _, first := range []string{"initiator", "joiner"} {
		t.Run(first+" confirms first", func(t *testing.T) {
			a, b := pair2(t)
			id, sasA, sasB := pairUp(t, a, b, "beta")
			if sasA != sasB {
				t.Fatalf("digits differ without anyone in the middle: %s, %s", sasA, sasB)
			}
			x, y := a, b
			if first == "joiner" {
				x, y = b, a
			}
			st, err := x.Confirm(ctx, id, sasA[:3]+" "+sasA[3:])
			if err != nil || st.State != PairConfirmed {
				t.Fatalf("first confirm: %+v, %v; want confirmed, waiting for the other side", st, err)
			}
			if trust, _ := x.Trust(ctx); trust["id-"+y.name].Tier != Introduced {
				t.Fatalf("%s pinned %s before the other side confirmed", x.name, y.name)
			}
			if st, err := y.Confirm(ctx, id, sasA); err != nil || st.State != PairDone {
				t.Fatalf("second confirm: %+v, %v; want done", st, err)
			}
			if st, _ := x.Check(id); st.State != PairDone {
				t.Errorf("first side after the second confirm: %+v", st)
			}
			for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
				trust, _ := pair[0].Trust(ctx)
				if got := trust["id-"+pair[1].name]; got.Tier != Verified || got.IdentityKey != keyString(pair[1]) {
					t.Errorf("%s's trust in %s: %+v", pair[0].name, pair[1].name, got)
				}
			}
		})
	}
}

func TestPairingWrongDigitsAbortBoth(t *testing.T) {
	a, b := pair2(t)
	id, sas, _ := pairUp(t, a, b, "beta")
	wrong := "000000"
	if sas == wrong {
		wrong = "111111"
	}
	if st, _ := b.Confirm(ctx, id, sas); st.State != PairConfirmed {
		t.Fatalf("b's confirm: %+v", st)
	}
	if st, _ := a.Confirm(ctx, id, wrong); st.State != PairAborted {
		t.Errorf("a's confirm with the wrong digits: %+v, want aborted", st)
	}
	if st, _ := b.Check(id); st.State != PairAborted {
		t.Errorf("b after a's mismatch: %+v, want aborted", st)
	}
	if _, err := a.Confirm(ctx, id, sas); err == nil {
		t.Error("an aborted session took the right digits afterwards")
	}
	assertNothingPinned(t, a, b)
}

func assertNothingPinned(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		trust, _ := n.Trust(ctx)
		for id, tr := range trust {
			if tr.Tier == Verified {
				t.Errorf("%s pinned %s", n.name, id)
			}
		}
	}
}

// TestPairingManInTheMiddle: the coordination server lies to both sides,
// introducing mallory's nodes as beta (to alpha) and as alpha (to beta);
// mallory runs the protocol with each side and even hands beta a code of
// its own. The digits differ, and nothing is pinned.
func TestPairingManInTheMiddle(t *testing.T) {
	port := freePort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
	alpha := newNode(t, "alpha", "127.0.0.2", port, "")
	beta := newNode(t, "beta", "127.0.0.3", port, "")
	m1 := newNode(t, "mallory1", "127.0.0.4", port, "") // poses as beta
	m2 := newNode(t, "mallory2", "127.0.0.5", port, "") // poses as alpha
	as := func(n *testNode, name string) api.Peer {
		p := n.asPeer()
		p.NodeID, p.NodeName = "id-"+name, name
		return p
	}
	alpha.SetPeers(ctx, []api.Peer{as(m1, "beta")})
	m1.SetPeers(ctx, []api.Peer{alpha.asPeer()})
	beta.SetPeers(ctx, []api.Peer{as(m2, "alpha")})
	m2.SetPeers(ctx, []api.Peer{beta.asPeer()})
	for _, n := range []*testNode{alpha, beta, m1, m2} {
		waitListening(t, n)
	}
	idA, sasAlpha, sasM1 := pairUp(t, alpha, m1, "beta")
	idB, sasM2, sasBeta := pairUp(t, m2, beta, "beta")
	t.Logf("alpha shows %s, beta shows %s", sasAlpha, sasBeta)
	if sasAlpha == sasBeta {
		t.Fatal("a man in the middle got both sides to show the same digits (one chance in a million, or a broken protocol)")
	}
	// Each person types what the other read out: both abort.
	if st, _ := alpha.Confirm(ctx, idA, sasBeta); st.State != PairAborted {
		t.Errorf("alpha: %+v", st)
	}
	if st, _ := beta.Confirm(ctx, idB, sasAlpha); st.State != PairAborted {
		t.Errorf("beta: %+v", st)
	}
	_, _ = sasM1, sasM2
	assertNothingPinned(t, alpha, beta)
}

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestPairingExpires(t *testing.T) {
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	clock := &fakeClock{now: time.Now()}
	a := newNodeClock(t, "alpha", "127.0.0.2", port, "", clock.Now)
	b := newNode(t, "beta", "127.0.0.3", port, "")
	mesh(t, a, b)
	id, sas, _ := pairUp(t, a, b, "beta")
	clock.add(PairTTL + time.Second)
	waitFor(t, "the session to expire", func() bool {
		st, _ := a.Check(id)
		return st.State == PairExpired
	})
	if _, err := a.Confirm(ctx, id, sas); err == nil {
		t.Error("an expired session took the digits")
	}
	assertNothingPinned(t, a, b)
}

// TestPairingsAtOnce: one node pairs with two peers at the same time.
func TestPairingsAtOnce(t *testing.T) {
	port := freePort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	a := newNode(t, "alpha", "127.0.0.2", port, "")
	b := newNode(t, "beta", "127.0.0.3", port, "")
	c := newNode(t, "gamma", "127.0.0.4", port, "")
	mesh(t, a, b, c)
	idB, sasB, _ := pairUp(t, a, b, "beta")
	idC, sasC, _ := pairUp(t, a, c, "gamma")
	for _, step := range []struct {
		n       *testNode
		id, sas string
	}{{a, idB, sasB}, {a, idC, sasC}, {c, idC, sasC}, {b, idB, sasB}} {
		if _, err := step.n.Confirm(ctx, step.id, step.sas); err != nil {
			t.Fatal(err)
		}
	}
	trust, _ := a.Trust(ctx)
	if trust["id-beta"].Tier != Verified || trust["id-gamma"].Tier != Verified {
		t.Errorf("alpha's trust after two pairings: %+v", trust)
	}
}

// TestSASCommitsToKeys: the digits change with either identity key, so
// matching digits mean both sides saw the same two keys.
func TestSASCommitsToKeys(t *testing.T) {
	s := session{id: "s", keyA: "ka", keyB: "kb", nonceA: make([]byte, 32), nonceB: make([]byte, 32)}
	base := s.sas()
	for _, change := range []func(*session){
		func(s *session) { s.keyA = "kx" }, func(s *session) { s.keyB = "kx" }, func(s *session) { s.id = "t" },
	} {
		c := s
		change(&c)
		if c.sas() == base {
			t.Errorf("%+v gives the same digits as %+v", c, s)
		}
	}
}
