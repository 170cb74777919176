//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// A /peers answer at 10,000 nodes is megabytes of JSON, and every node
// reads one after each restart. Decoding them with encoding/json would
// cost the simulator about what encoding them costs the server, so the
// simulator reads them as a stream instead, taking only what it needs:
// the node ids listed (to know whether a node holds the whole map), the
// watched peer's nat_port (for propagation), the version, "full" and
// "removed". It relies on the server's exact encoding (encoding/json's,
// fields in api.PeersResponse's order, no whitespace) and on strings
// without escapes, which is what wire server sends for the simulated
// nodes; a policy's per-peer filter is not supported (the benchmark sets
// none) and is an error.

// bitset is a set of node indexes.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i>>6] |= 1 << (i & 63) }
func (b bitset) unset(i int)    { b[i>>6] &^= 1 << (i & 63) }
func (b bitset) has(i int) bool { return b[i>>6]&(1<<(i&63)) != 0 }
func (b bitset) or(o bitset) {
	for i := range b {
		b[i] |= o[i]
	}
}
func (b bitset) zero() { clear(b) }
func (b bitset) count() (n int) {
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// watch is a peer and the nat_port that a propagation round waits for.
type watch struct {
	node, port int // node < 0: none
}

// answer is what one /peers answer says.
type answer struct {
	n       int    // node indexes are below n
	seen    bitset // the peers listed
	removed []int
	version []byte
	full    bool
	watch   watch
	watched bool // the watched peer is listed with the watched nat_port
}

func newAnswer(n int) *answer { return &answer{n: n, seen: newBitset(n)} }

// reset readies a for the next answer.
func (a *answer) reset(w watch) {
	a.seen.zero()
	a.removed = a.removed[:0]
	a.version = a.version[:0]
	a.full, a.watched, a.watch = false, false, w
}

var (
	prefixPeers = []byte(`{"peers":[`)
	keyNodeID   = []byte(`"node_id":"` + idPrefix)
	keyNATPort  = []byte(`"nat_port":`)
	errPolicy   = errors.New("a peer has a policy filter: run the benchmark on a mesh without a policy")
)

// read reads a /peers answer's body from br, to its end.
func (a *answer) read(br *bufio.Reader) error {
	head, err := br.Peek(len(prefixPeers))
	if err != nil {
		return fmt.Errorf("answer: %w", unexpected(err))
	}
	if !bytes.Equal(head, prefixPeers) {
		return fmt.Errorf("answer starts %q, not %q", head, prefixPeers)
	}
	br.Discard(len(prefixPeers))
	for {
		b, err := br.Peek(1)
		if err != nil {
			return fmt.Errorf("answer's peers: %w", unexpected(err))
		}
		switch b[0] {
		case '{':
			obj, err := br.ReadSlice('}')
			if err != nil {
				return fmt.Errorf("answer's peer: %w", unexpected(err))
			}
			if err := a.peer(obj); err != nil {
				return err
			}
		case ',':
			br.Discard(1)
		case ']':
			return a.tail(br)
		default:
			return fmt.Errorf("answer's peers: unexpected %q", b[0])
		}
	}
}

// peer takes one peer object, {"node_id":...}. A peer with a policy
// filter would end the slice early, at the filter's own closing brace,
// after its accept list's bracket.
func (a *answer) peer(obj []byte) error {
	if len(obj) < 2 || obj[len(obj)-2] == ']' {
		return errPolicy
	}
	i := bytes.Index(obj, keyNodeID) // at the start
	if i < 0 {
		return fmt.Errorf("peer without a simulated node's node_id: %.80q", obj)
	}
	id, rest := parseUint(obj[i+len(keyNodeID):])
	if len(rest) == 0 || rest[0] != '"' || id < 0 || id >= a.n {
		return fmt.Errorf("peer with a node_id not of the simulation: %.80q", obj[i:])
	}
	port := natPort(rest)
	if port < 0 {
		return fmt.Errorf("peer without nat_port: %.80q", obj)
	}
	a.seen.set(id)
	if id == a.watch.node && port == a.watch.port {
		a.watched = true
	}
	return nil
}

// natPort finds a peer object's nat_port: where encoding/json puts it
// when there is no lan_ip, before the node_key (a pin: 52 characters) at
// the end, else by a search. It returns -1 if there is none.
func natPort(obj []byte) int {
	const tail = len(`,"node_key":"`) + 52 + len(`"}`)
	if end := len(obj) - tail; end > len(keyNATPort) {
		start := end
		for start > 0 && obj[start-1] >= '0' && obj[start-1] <= '9' {
			start--
		}
		if start < end && bytes.HasSuffix(obj[:start], keyNATPort) {
			port, _ := parseUint(obj[start:end])
			return port
		}
	}
	j := bytes.Index(obj, keyNATPort)
	if j < 0 {
		return -1
	}
	port, _ := parseUint(obj[j+len(keyNATPort):])
	return port
}

// tailKey is a field of the answer after its peers.
type tailKey int

const (
	keyOther tailKey = iota
	keyVersion
	keyFull
	keyRemoved
)

func tailKeyOf(s []byte) tailKey {
	switch string(s) {
	case "version":
		return keyVersion
	case "full":
		return keyFull
	case "removed":
		return keyRemoved
	}
	return keyOther
}

// tail reads what follows the peers, `],"version":"V","full":true,
// "removed":["ID",...]}`, which may be long (a removed list). It reads
// it split at quotes: the pieces alternate between JSON's structure and
// the contents of strings.
func (a *answer) tail(br *bufio.Reader) error {
	var (
		key       tailKey
		inString  bool
		inArray   bool
		expectKey bool
	)
	for {
		seg, err := br.ReadSlice('"')
		if err == io.EOF && !inString {
			a.structure(seg, key, &inArray)
			switch {
			case !bytes.Contains(seg, []byte("}")):
				return fmt.Errorf("answer's tail: %w", io.ErrUnexpectedEOF)
			case len(a.version) == 0:
				return errors.New("answer without a version")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("answer's tail: %w", unexpected(err))
		}
		s := seg[:len(seg)-1]
		switch {
		case !inString:
			a.structure(s, key, &inArray)
			last := byte(0)
			if len(s) > 0 {
				last = s[len(s)-1]
			}
			expectKey = !inArray && (last == ',' || last == '{')
		case expectKey:
			key = tailKeyOf(s)
		case key == keyVersion && !inArray:
			a.version = append(a.version[:0], s...)
		case key == keyRemoved && inArray:
			if err := a.removal(s); err != nil {
				return err
			}
		}
		inString = !inString
	}
}

// structure takes a piece of the tail outside strings: brackets, and the
// value of "full".
func (a *answer) structure(s []byte, key tailKey, inArray *bool) {
	for _, c := range s {
		switch c {
		case '[':
			*inArray = true
		case ']':
			*inArray = false
		}
	}
	if key == keyFull && bytes.Contains(s, []byte("true")) {
		a.full = true
	}
}

// removal takes one node_id of "removed".
func (a *answer) removal(s []byte) error {
	rest, ok := bytes.CutPrefix(s, []byte(idPrefix))
	id, tail := parseUint(rest)
	if !ok || len(tail) != 0 || id < 0 || id >= a.n {
		return fmt.Errorf("removed node_id %q is not of the simulation", s)
	}
	a.removed = append(a.removed, id)
	return nil
}

// parseUint parses the decimal digits at the start of b; it returns -1
// if there are none (or too many).
func parseUint(b []byte) (int, []byte) {
	n, i := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 9; i++ {
		n = n*10 + int(b[i]-'0')
	}
	if i == 0 {
		return -1, b
	}
	return n, b[i:]
}

// unexpected turns an early end of the body into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
