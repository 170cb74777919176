package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/stun"
)

// nodeIDPattern is what the server accepts as a node_id.
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// JoinOptions are `wire up`'s first-time flags.
type JoinOptions struct {
	Dir       string
	ServerURL string
	// OtherServers are more servers of the same mesh, for failover.
	OtherServers []string
	JoinKey      string // needed unless the server runs in --open mode
	Name         string // default: the hostname
	Port         int    // WireGuard listen port
	Interface    string
	NodeID       string // default: NodeIDFor(Dir)
	// Progress, if set, hears what the join is doing, a step at a time.
	Progress func(step string)
}

// Join enrols this node with a server and saves its config. Nothing is
// saved unless the server accepted the node.
func Join(ctx context.Context, o JoinOptions) (Config, error) {
	u, err := api.ParseServerURL(o.ServerURL)
	if err != nil {
		return Config{}, err
	}
	var key *api.JoinKey
	switch {
	case o.JoinKey != "":
		k, err := api.ParseJoinKey(o.JoinKey)
		if err != nil {
			return Config{}, err
		}
		if u.Scheme != "https" {
			return Config{}, fmt.Errorf("server URL %s: a join key needs https://", o.ServerURL)
		}
		key = &k
	case u.Scheme == "https":
		return Config{}, errors.New("joining needs a join key: pass --join KEY (from `wire server key create` on the server)")
	}
	if o.NodeID != "" && !nodeIDPattern.MatchString(o.NodeID) {
		return Config{}, fmt.Errorf("--node-id %q: want 1 to 64 letters, digits, '.', '_' or '-'", o.NodeID)
	}
	keys, err := LoadKeys(o.Dir)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{
		ServerURL: u.String(), NodeName: o.Name, NodeID: o.NodeID, ListenPort: o.Port,
		Interface: o.Interface, STUNPort: defaultSTUNPort(u),
		Rename: o.Name != "", // a node the server knows keeps its name unless one is asked for
	}
	if cfg.OtherServers, err = otherServers(u, o.OtherServers); err != nil {
		return Config{}, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = NodeIDFor(o.Dir)
	}
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
	if key != nil {
		cfg.ServerPin = key.Pin.String()
	}
	client, err := cfg.client(keys)
	if err != nil {
		return Config{}, err
	}
	say := o.Progress
	if say == nil {
		say = func(string) {}
	}
	// Health checks the server (and its pin) before the key is sent, and
	// says where its STUN is.
	say("reaching " + u.String() + " and checking its key")
	h, err := client.Health(ctx)
	if err != nil {
		return Config{}, err
	}
	if h.STUNPort != 0 {
		cfg.STUNPort = h.STUNPort
	}
	say("asking the server's STUN for this node's public address")
	mapped := discoverBeforeUp(ctx, u, cfg)
	if mapped.IsValid() {
		cfg.NATPort = int(mapped.Port()) // what the daemon says while STUN cannot tell it
	}
	req := cfg.registerRequest(keys, mapped)
	if key != nil {
		req.JoinKey = key.String()
	}
	say("enrolling as " + cfg.NodeName)
	resp, err := client.Register(ctx, req)
	if err != nil {
		return Config{}, joinError(err)
	}
	cfg.apply(resp)
	return cfg, cfg.Save(o.Dir)
}

// discoverBeforeUp asks the server's STUN for the public mapping of the
// WireGuard port before the tunnel holds it (as the seed did), so that
// peers learn the right endpoint from the enrolment itself; a wrong one
// would cost them WireGuard's 5 s handshake backoff. It gives up quietly:
// the daemon discovers again once it runs.
func discoverBeforeUp(ctx context.Context, u *url.URL, cfg Config) netip.AddrPort {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: cfg.ListenPort})
	if err != nil {
		return netip.AddrPort{} // the port is busy: nothing to learn from it now
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrs[0].Unmap(), uint16(cfg.STUNPort)))
	mapped, err := stun.Query(ctx, conn, server)
	if err != nil {
		return netip.AddrPort{}
	}
	return mapped
}

// SetServers makes urls the mesh's servers, the first first.
func (c *Config) SetServers(urls []string) error {
	if len(urls) == 0 {
		return errors.New("no server URL")
	}
	u, err := api.ParseServerURL(urls[0])
	if err != nil {
		return err
	}
	others, err := otherServers(u, urls[1:])
	if err != nil {
		return err
	}
	if c.ServerPin != "" && u.Scheme != "https" {
		return fmt.Errorf("server URL %s: this node trusts its server by a pinned key, over https://", u)
	}
	c.ServerURL, c.OtherServers = u.String(), others
	return nil
}

// otherServers checks the URLs of more servers of the mesh of first, and
// returns them in their canonical form, without repeats.
func otherServers(first *url.URL, others []string) ([]string, error) {
	seen := map[string]bool{first.String(): true}
	var out []string
	for _, s := range others {
		u, err := api.ParseServerURL(s)
		if err != nil {
			return nil, err
		}
		if u.Scheme != first.Scheme {
			return nil, fmt.Errorf("server URLs %s and %s: the servers of one mesh are all https, or all http", first, u)
		}
		if !seen[u.String()] {
			seen[u.String()] = true
			out = append(out, u.String())
		}
	}
	return out, nil
}

func joinError(err error) error {
	var se *api.StatusError
	if errors.As(err, &se) {
		return fmt.Errorf("the server refused to enrol this node: %s", se.Message)
	}
	return err
}

func defaultSTUNPort(u *url.URL) int {
	p, _ := strconv.Atoi(u.Port())
	if p == 0 {
		p = 8787
	}
	return p + 1
}

// apply takes what the server said of this node.
func (c *Config) apply(resp api.RegisterResponse) {
	c.VPNIP = resp.VPNIP
	if resp.Subnet != "" {
		c.Subnet = resp.Subnet
	} else if c.Subnet == "" {
		c.Subnet = netip.PrefixFrom(netip.MustParseAddr(resp.VPNIP), 16).Masked().String() // the seed's /16
	}
	if resp.STUNPort != 0 {
		c.STUNPort = resp.STUNPort
	}
	c.DNSDomain = resp.DNSDomain
	c.named(resp.NodeName)
}

// named takes in the name the server holds for this node ("": a server
// that does not say) and says whether the config changed: a rename this
// node asked for is done once the server holds it, and a name an admin
// gave the node replaces its own.
func (c *Config) named(name string) bool {
	switch {
	case name == "":
		return false
	case c.Rename:
		c.Rename = name != c.NodeName
		return !c.Rename
	case name != c.NodeName:
		c.NodeName = name
		return true
	}
	return false
}

func (c Config) client(keys Keys) (*api.Client, error) {
	cc := api.ClientConfig{URL: c.ServerURL, Others: c.OtherServers, Cert: &keys.Identity}
	if c.ServerPin != "" {
		pin, err := api.ParsePin(c.ServerPin)
		if err != nil {
			return nil, err
		}
		cc.Pin = pin
	}
	return api.NewClient(cc)
}

func (c Config) registerRequest(keys Keys, mapped netip.AddrPort) api.RegisterRequest {
	req := api.RegisterRequest{
		NodeID: c.NodeID, NodeName: c.NodeName, WGPublicKey: keys.WG.PublicKey().String(),
		Port: c.ListenPort, NATPort: c.NATPort, LANIP: lanIP(c.ServerURL), Rename: c.Rename,
	}
	if mapped.IsValid() {
		req.NATPort = int(mapped.Port())
	}
	return req
}

// lanIP is the local address this machine uses to reach the server: the
// address peers behind the same NAT can reach it on.
func lanIP(serverURL string) string {
	u, err := url.Parse(serverURL)
	if err != nil {
		return ""
	}
	host := u.Hostname()
	conn, err := net.Dial("udp", net.JoinHostPort(host, "9")) // no packet is sent
	if err != nil {
		return ""
	}
	defer conn.Close()
	ap, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil || ap.Addr().IsLoopback() || ap.Addr().Zone() != "" {
		return "" // a zone (link-local) names an interface of ours, useless to peers
	}
	return ap.Addr().Unmap().String()
}

// Offline tells the server that the node in dir is not running, as the
// daemon does when it stops: for a wire up that enrolled but could not
// start the daemon, so that peers do not see a node that is not there.
func Offline(ctx context.Context, dir string) error {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	keys, err := LoadKeys(dir)
	if err != nil {
		return err
	}
	client, err := cfg.client(keys)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return client.Offline(ctx)
}
