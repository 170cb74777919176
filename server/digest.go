package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"math/bits"
	"sort"
)

// A node's version string names a version of one server run's change
// log, useless to another run or another replica. After a restart every
// node would then be sent the whole map at once (at 10,000 nodes, 10,000
// answers of 2.5 MB), though nearly all of them hold the very map the new
// run loaded. So the version string also carries a digest of the map it
// stands for, and a server that cannot place the version looks the digest
// up among the maps it has held: a node whose map it has held gets the
// changes since then, not the whole map.
//
// The digest is the sum (mod 2^128) of one keyed hash per online node, of
// the node as peers see it: one change updates it in O(1), and two
// servers holding the same map compute the same digest. The key is the
// servers' own, derived from their TLS key, so no node can choose its
// record to make two maps collide. A map filtered by a policy has no
// digest: such nodes are sent their whole view after a restart.

// digest is a map digest: a sum of 128-bit hashes.
type digest struct{ hi, lo uint64 }

func (d digest) add(e digest) digest {
	lo, c := bits.Add64(d.lo, e.lo, 0)
	hi, _ := bits.Add64(d.hi, e.hi, c)
	return digest{hi, lo}
}

func (d digest) sub(e digest) digest {
	lo, b := bits.Sub64(d.lo, e.lo, 0)
	hi, _ := bits.Sub64(d.hi, e.hi, b)
	return digest{hi, lo}
}

func (d digest) String() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], d.hi)
	binary.BigEndian.PutUint64(b[8:], d.lo)
	return hex.EncodeToString(b[:])
}

func parseDigest(s string) (digest, bool) {
	var b [16]byte
	if len(s) != 2*len(b) {
		return digest{}, false
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return digest{}, false
	}
	return digest{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}, true
}

// digests keeps the registry's map digest up to date, and remembers at
// which version it last held each recent map.
type digests struct {
	mac   hash.Hash
	sum   digest
	parts map[string]digest // each online node's hash, by node id
	at    map[digest]uint64 // the latest version with that digest
}

func newDigests(key []byte) digests {
	return digests{mac: hmac.New(sha256.New, key), parts: make(map[string]digest), at: make(map[digest]uint64)}
}

// set makes n's part of the digest what it is at version v: its hash if
// it is in the map, none if it is not.
func (d *digests) set(r *registry, n *node, v uint64) {
	id := n.NodeID
	d.sum = d.sum.sub(d.parts[id])
	delete(d.parts, id)
	if r.nodes[id] == n && n.online {
		part := d.hash(n)
		d.parts[id] = part
		d.sum = d.sum.add(part)
	}
	d.at[d.sum] = v
}

func (d *digests) hash(n *node) digest {
	b, err := json.Marshal(n.peer())
	if err != nil {
		panic(err) // a Peer always encodes
	}
	d.mac.Reset()
	d.mac.Write(b)
	var sum [sha256.Size]byte
	s := d.mac.Sum(sum[:0])
	return digest{binary.BigEndian.Uint64(s[:8]), binary.BigEndian.Uint64(s[8:16])}
}

// lookup returns the latest version at which the map had digest s.
func (d *digests) lookup(s string) (uint64, bool) {
	sum, ok := parseDigest(s)
	if !ok {
		return 0, false
	}
	v, ok := d.at[sum]
	return v, ok
}

// trim forgets the maps held before horizon, and the oldest beyond keep.
func (d *digests) trim(horizon uint64, keep int) {
	for sum, v := range d.at {
		if v < horizon {
			delete(d.at, sum)
		}
	}
	if len(d.at) <= keep {
		return
	}
	vs := make([]uint64, 0, len(d.at))
	for _, v := range d.at {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] > vs[j] })
	oldest := vs[keep-1]
	for sum, v := range d.at {
		if v < oldest {
			delete(d.at, sum)
		}
	}
}
