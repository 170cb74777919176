package relaytest

import (
	"net/netip"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	r := Serve(t)
	ipA, ipB := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	a, _ := r.Dial(t, ipA)
	_, gotB := r.Dial(t, ipB)
	if err := a.WriteTo([]byte("hi"), ipB); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-gotB:
		if p.From != ipA || string(p.Payload) != "hi" {
			t.Errorf("B received %q from %v, want %q from %v", p.Payload, p.From, "hi", ipA)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("B received nothing")
	}
}
