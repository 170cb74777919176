// Package api defines the coordination protocol between wire nodes and the
// wire server: its JSON messages, join keys, certificate pins and a client.
package api

import "time"

// Paths of the coordination server's HTTP API. They are the seed's (the
// Python meshpop-wire 2.2), so old clients keep working in --open mode.
const (
	PathRegister = "/register"
	PathPeers    = "/peers"
	PathStatus   = "/status"
	PathIP       = "/ip"
	PathHealth   = "/health"
	PathPunch    = "/punch"
	PathRelay    = "/relay"
	// PathRelayStream is the relay over TCP, for a node whose UDP is
	// blocked: GET with Upgrade: RelayUpgrade, answered 101, and then the
	// connection carries the relay's frames (see package relay's Stream).
	PathRelayStream = "/relay/stream"
	PathOffline     = "/offline"
)

// Online is how recent a heartbeat must be for a node to count as online.
const Online = 5 * time.Minute

// Listed is how long an offline node stays in /status.
const Listed = 24 * time.Hour

// MaxWait bounds how long a /peers long-poll may be held open.
const MaxWait = 30 * time.Second

// RegisterRequest is the body of POST /register: the first call enrols a
// node (with a join key), every later one is its heartbeat.
type RegisterRequest struct {
	NodeID      string `json:"node_id"`
	NodeName    string `json:"node_name"`
	WGPublicKey string `json:"wg_public_key"`
	Port        int    `json:"port"`
	NATPort     int    `json:"nat_port"`
	LANIP       string `json:"lan_ip,omitempty"`
	// JoinKey is needed only to enrol. It is not part of the seed's API.
	JoinKey string `json:"join_key,omitempty"`
	// Rename says that NodeName is a new name the node asks for. Without
	// it, a known node keeps the name the server holds, which an admin
	// may have changed (see RegisterResponse.NodeName); seed nodes, which
	// do not send it, are renamed by their NodeName as before.
	Rename bool `json:"rename,omitempty"`
	// Version is the node's wire version, for the admin's eyes.
	Version string `json:"version,omitempty"`
	// Relayed are the node IDs of the peers this node reaches through
	// the relay now (the rest it reaches directly, or not at all), for
	// the admin's map of the mesh: at most MaxRelayed of them.
	Relayed []string `json:"relayed,omitempty"`
	// RelayTCP says the node reaches the relay over TCP (PathRelayStream):
	// UDP to the server is blocked where it is, so its peers reach it only
	// through the relay.
	RelayTCP bool `json:"relay_tcp,omitempty"`
}

// MaxRelayed is how many relayed peers a registration lists at most:
// 512 of the longest node ids fit well within a request's 64 KiB.
const MaxRelayed = 512

// RegisterResponse answers POST /register.
type RegisterResponse struct {
	OK     bool   `json:"ok"`
	VPNIP  string `json:"vpn_ip"`
	YourIP string `json:"your_ip"`
	// Subnet is the VPN's prefix (e.g. 10.99.0.0/16), so the node can
	// route it. Empty from --open servers, which speak the seed's shapes.
	Subnet string `json:"subnet,omitempty"`
	// STUNPort is the server's STUN port (by default the HTTP port + 1).
	STUNPort int `json:"stun_port,omitempty"`
	// DNSDomain is the mesh's DNS domain: node NAME is NAME.DNSDomain.
	DNSDomain string `json:"dns_domain,omitempty"`
	// HeartbeatEvery, in seconds, is how often the node need heartbeat
	// while its long-polls are answered: a server that counts each
	// long-poll as a sign of life says so. Absent: every 30 s, as the
	// seed did.
	HeartbeatEvery int `json:"heartbeat_every,omitempty"`
	// NodeName is the node's name as the server holds it: the one it
	// asked for, or the one an admin gave it since.
	NodeName string `json:"node_name,omitempty"`
}

// PollHeartbeat is the heartbeat period a server that counts long-polls
// as signs of life asks for: well inside Online, so that a node whose
// polls fail for a while still counts as online.
const PollHeartbeat = 2 * time.Minute

// Heartbeat is the seed's heartbeat period, for servers that ask nothing.
const Heartbeat = 30 * time.Second

// HeartbeatPeriod is the period a node heartbeats at when a register
// answer says heartbeat_every secs (0: nothing): never more often than the
// seed's, never so seldom that one lost heartbeat takes it offline.
func HeartbeatPeriod(secs int) time.Duration {
	if secs <= 0 {
		return Heartbeat
	}
	return min(max(time.Duration(secs)*time.Second, Heartbeat), Online/2)
}

// DefaultDNSDomain is the mesh's DNS domain unless the server says another.
const DefaultDNSDomain = "wire"

// Peer is one online node as other nodes need it to configure WireGuard.
type Peer struct {
	NodeID      string `json:"node_id"`
	NodeName    string `json:"node_name"`
	VPNIP       string `json:"vpn_ip"`
	WGPublicKey string `json:"wg_public_key"`
	PublicIP    string `json:"public_ip"`
	Port        int    `json:"port"`
	NATPort     int    `json:"nat_port"`
	LANIP       string `json:"lan_ip,omitempty"`
	// NodeKey is the pin of the node's identity key (see KeyPin), with
	// which it signs its messages to other nodes. Empty from --open
	// servers, whose nodes have no identity key.
	NodeKey string `json:"node_key,omitempty"`
	// Filter is, when the mesh has a policy, what this peer may send to
	// the node that asked; nil when it has none: anything.
	Filter *PeerFilter `json:"filter,omitempty"`
	// RelayTCP says the peer reaches the relay over TCP, its UDP being
	// blocked (see RegisterRequest.RelayTCP): only the relay reaches it.
	RelayTCP bool `json:"relay_tcp,omitempty"`
}

// PeerFilter is what a peer may send to a node under the mesh's policy,
// besides replies to the node's own connections.
type PeerFilter struct {
	// Accept lists protocols and destination ports ("tcp:22", "*:443",
	// "udp:1000-2000", "icmp"; see filter.ParseAllow). Empty: nothing.
	Accept []string `json:"accept"`
}

// PeersResponse answers GET /peers. Without ?since= it is the seed's shape:
// every online node. With ?since=VERSION it carries only what changed after
// VERSION: Peers are added or updated, Removed are node_ids that left the
// online set. Full says Peers is the whole set (the server could not give a
// delta from VERSION), so the receiver replaces rather than merges.
type PeersResponse struct {
	Peers   []Peer   `json:"peers"`
	Version string   `json:"version,omitempty"`
	Full    bool     `json:"full,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// Status answers GET /status.
type Status struct {
	Version string       `json:"version"`
	Total   int          `json:"total"`
	Online  int          `json:"online"`
	Offline int          `json:"offline"`
	Nodes   []NodeStatus `json:"nodes"`
}

// NodeStatus is one node in /status.
type NodeStatus struct {
	NodeName    string `json:"node_name"`
	VPNIP       string `json:"vpn_ip"`
	PublicIP    string `json:"public_ip"`
	NATPort     int    `json:"nat_port"`
	Status      string `json:"status"`
	LastSeenAgo int64  `json:"last_seen_ago"`
	// Tags are the node's tags, for the policy (wire server nodes only).
	Tags []string `json:"tags,omitempty"`
	// ExpiresAt is when the node's enrolment expires or expired (status
	// "expired"), in RFC 3339; absent if never (wire server nodes only).
	ExpiresAt string `json:"expires_at,omitempty"`
}

// Health answers GET /health.
type Health struct {
	OK      bool   `json:"ok"`
	Version string `json:"version"`
	Total   int    `json:"total"`
	Online  int    `json:"online"`
	// STUNPort is the server's STUN port; absent from --open servers.
	STUNPort int `json:"stun_port,omitempty"`
	// RelayPort is the server's relay port, which answers STUN too (a
	// second destination, for wire netcheck); absent from --open servers.
	RelayPort int `json:"relay_port,omitempty"`
}

// IP answers GET /ip.
type IP struct {
	IP string `json:"ip"`
}

// PunchRequest is the body of POST /punch: a node reports a failed direct
// attempt to reach a peer.
type PunchRequest struct {
	FromVPNIP string `json:"from_vpn_ip"`
	ToVPNIP   string `json:"to_vpn_ip"`
}

// PunchResponse answers POST /punch.
type PunchResponse struct {
	OK       bool `json:"ok"`
	UseRelay bool `json:"use_relay"`
	Attempts int  `json:"attempts"`
}

// RelayResponse answers POST /relay: the credentials with which a node
// proves itself to the server's UDP relay (see package relay).
type RelayResponse struct {
	Port  int    `json:"relay_port"`
	Token []byte `json:"token"` // base64 in JSON
}

// OK is the answer of requests that return nothing else (POST /offline).
type OK struct {
	OK bool `json:"ok"`
}

// Error is the body of every 4xx and 5xx response.
type Error struct {
	Error string `json:"error"`
	// Code, where present, says what went wrong for a program to act on:
	// CodeNodeExpired.
	Code string `json:"code,omitempty"`
}

// CodeNodeExpired says that the node's enrolment expired (see wire server
// key create --expire): it must authenticate again with a join key.
const CodeNodeExpired = "node_expired"
