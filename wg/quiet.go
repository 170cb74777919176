package wg

import (
	"bytes"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// A quiet start. Both engines send a peer a keepalive, and so a handshake
// initiation, the moment it is configured with a persistent keepalive. A
// pair learns of each other at once (the server's long poll tells both
// in the same moment), so both ends would initiate within a round trip of
// each other: each then consumes the other's initiation, which discards
// its own, the responses answer initiations neither end still holds, and
// the pair waits out WireGuard's 5 s retry, more than once if the retries
// cross too (see crossing.go). So of two ends, the one with the lower
// public key starts at once, and the other configures the new peer
// without its persistent keepalive for quietFor: it answers the other's
// initiation, or, if that never came (the other end learnt of the pair
// later, or cannot reach it), starts its own when the keepalive is set.
// Traffic is not held back: a packet for the peer starts a handshake
// as always.

// quietFor is how long the end that yields waits before it gives a new
// peer its persistent keepalive: well over the time for both ends to
// learn of the pair and complete a handshake, well under WireGuard's
// REKEY_TIMEOUT (5 s). Zero turns quiet starts off.
var quietFor = time.Second // a variable for tests

// yields says whether the end whose public key is self lets peer start.
func yields(self, peer Key) bool {
	return self != (Key{}) && bytes.Compare(self[:], peer[:]) > 0
}

// hush takes the persistent keepalive off the new peers in d (not in
// have) that this end yields to, and notes when they get it; and off the
// quiet ones that d changes before then.
func (s *state) hush(d *wgtypes.Config, have map[Key]Peer, private Key) {
	if private == (Key{}) || quietFor <= 0 {
		return
	}
	self := private.PublicKey()
	due := time.Now().Add(quietFor)
	for i, pc := range d.Peers {
		if pc.Remove || pc.UpdateOnly {
			continue
		}
		_, had := have[pc.PublicKey]
		_, quiet := s.quiet[pc.PublicKey]
		switch {
		case had && quiet: // changed while quiet: it stays so until due
		case had || !yields(self, pc.PublicKey):
			continue
		default:
			if s.quiet == nil {
				s.quiet = map[Key]time.Time{}
			}
			s.quiet[pc.PublicKey] = due
		}
		var none time.Duration
		d.Peers[i].PersistentKeepaliveInterval = &none
	}
}

// scheduleDress arranges for the quiet peers to get their keepalive when
// due. Callers hold s.lock.
func (s *state) scheduleDress() {
	if len(s.quiet) == 0 || s.dressing != nil || s.stopped {
		return
	}
	first := time.Time{}
	for _, due := range s.quiet {
		if first.IsZero() || due.Before(first) {
			first = due
		}
	}
	s.dressing = time.AfterFunc(time.Until(first), func() {
		s.lock.Lock()
		defer s.lock.Unlock()
		s.dressing = nil
		if !s.stopped {
			s.dress(time.Now())
			s.scheduleDress()
		}
	})
}

// dress gives the quiet peers due by now their persistent keepalive. If
// that fails they are tried again quietFor later: no Set may come to
// send them in full. Callers hold s.lock.
func (s *state) dress(now time.Time) {
	var d wgtypes.Config
	keepalive := Keepalive
	for k, due := range s.quiet {
		if due.After(now) {
			continue
		}
		delete(s.quiet, k)
		if _, ok := s.peers[k]; ok {
			d.Peers = append(d.Peers, wgtypes.PeerConfig{PublicKey: k, UpdateOnly: true, PersistentKeepaliveInterval: &keepalive})
		}
	}
	if len(d.Peers) == 0 {
		return
	}
	if err := s.apply(d); err != nil {
		for _, pc := range d.Peers {
			s.quiet[pc.PublicKey] = now.Add(quietFor)
		}
	}
}

// stop ends the quiet starts: the engine is closing. Callers hold s.lock.
func (s *state) stop() {
	s.stopped = true
	if s.dressing != nil {
		s.dressing.Stop()
		s.dressing = nil
	}
}
