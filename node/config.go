// Package node is wire's node daemon: it joins the mesh, keeps this
// machine's WireGuard interface in step with its peers, and serves the
// local control API behind `wire status`, `ping`, `down` and `wire mcp`.
package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/atomicfile"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Files in the node's state dir.
const (
	ConfigFile     = "config.json"
	PrivateKeyFile = "private.key" // WireGuard private key, 0600, never leaves the machine
	PublicKeyFile  = "public.key"
	NodeKeyFile    = "node.key" // ed25519 identity for the control channel, 0600
	PeersFile      = "peers.json"
	SocketFile     = "wire.sock"
	LogFile        = "wire.log"
)

// DefaultPort is WireGuard's listen port, as in the seed.
const DefaultPort = 51820

// DefaultInterface is the interface name on Linux.
const DefaultInterface = "wire0"

// Config is config.json: the seed's fields, plus what a node needs to
// reach its server securely and come back up without it.
type Config struct {
	ServerURL string `json:"server_url"`
	// OtherServers are more servers of the mesh (replicas sharing its
	// store), tried in turn when the one in use does not answer.
	OtherServers []string `json:"other_servers,omitempty"`
	ServerPin    string   `json:"server_pin,omitempty"` // empty for an --open server
	STUNPort     int      `json:"stun_port"`
	NodeName     string   `json:"node_name"`
	// Rename says NodeName is a name this node asks its server for (wire
	// up --name), until the server says it holds it. Otherwise the name
	// the server holds wins: an admin may rename a node.
	Rename     bool   `json:"rename,omitempty"`
	NodeID     string `json:"node_id"`
	VPNIP      string `json:"vpn_ip"`
	Subnet     string `json:"subnet"`
	ListenPort int    `json:"listen_port"`
	NATPort    int    `json:"nat_port"`
	Interface  string `json:"interface"`
	// DNSDomain is the mesh's DNS domain, as the server says ("" from
	// older servers and --open ones: api.DefaultDNSDomain).
	DNSDomain string `json:"dns_domain,omitempty"`
	// AcceptDNS says whether the daemon points the system's resolver at
	// its own for the mesh's names (nil: yes).
	AcceptDNS *bool `json:"accept_dns,omitempty"`
	// MetricsListen, if set, is the TCP address where the daemon serves
	// Prometheus metrics at /metrics, without authentication.
	MetricsListen string `json:"metrics_listen,omitempty"`
}

// acceptDNS is AcceptDNS with its default.
func (c Config) acceptDNS() bool { return c.AcceptDNS == nil || *c.AcceptDNS }

// Domain is the mesh's DNS domain.
func (c Config) Domain() string {
	if c.DNSDomain == "" {
		return api.DefaultDNSDomain
	}
	return c.DNSDomain
}

// ErrNoConfig says the node has not joined a mesh yet.
var ErrNoConfig = errors.New("this node has not joined a mesh yet: run wire up --server URL --join KEY")

// LoadConfig reads and checks config.json in dir.
func LoadConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return c, ErrNoConfig
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s is damaged (%v): remove it and join again with --server and --join", filepath.Join(dir, ConfigFile), err)
	}
	if err := c.check(); err != nil {
		return c, fmt.Errorf("%s is not usable (%v): remove it and join again with --server and --join", filepath.Join(dir, ConfigFile), err)
	}
	return c, nil
}

func (c Config) check() error {
	for _, u := range c.Servers() {
		if _, err := api.ParseServerURL(u); err != nil {
			return err
		}
	}
	if _, err := c.Address(); err != nil {
		return err
	}
	if c.ServerPin != "" {
		if _, err := api.ParsePin(c.ServerPin); err != nil {
			return err
		}
	}
	if c.NodeID == "" || c.NodeName == "" || c.ListenPort < 1 || c.ListenPort > 65535 {
		return errors.New("node_id, node_name or listen_port missing")
	}
	return nil
}

// Servers are the URLs of the mesh's servers, the first first.
func (c Config) Servers() []string { return append([]string{c.ServerURL}, c.OtherServers...) }

// Address is the node's VPN address with the subnet's prefix length.
func (c Config) Address() (netip.Prefix, error) {
	ip, err := netip.ParseAddr(c.VPNIP)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("vpn_ip %q: %w", c.VPNIP, err)
	}
	subnet, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !subnet.Contains(ip) {
		return netip.Prefix{}, fmt.Errorf("subnet %q does not hold vpn_ip %s", c.Subnet, ip)
	}
	return netip.PrefixFrom(ip, subnet.Bits()), nil
}

// Save writes config.json atomically.
func (c Config) Save(dir string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o644)
}

// Keys are the node's two private keys.
type Keys struct {
	WG       wgtypes.Key
	Identity tls.Certificate
}

// LoadKeys reads the node's keys from dir, creating them on first use.
func LoadKeys(dir string) (Keys, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Keys{}, fmt.Errorf("state dir: %w", err)
	}
	wg, err := loadWGKey(dir)
	if err != nil {
		return Keys{}, err
	}
	id, err := loadIdentity(dir)
	if err != nil {
		return Keys{}, err
	}
	return Keys{WG: wg, Identity: id}, nil
}

func loadWGKey(dir string) (wgtypes.Key, error) {
	path := filepath.Join(dir, PrivateKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return k, err
		}
		if err := atomicfile.Write(path, []byte(k.String()+"\n"), 0o600); err != nil {
			return k, err
		}
		return k, atomicfile.Write(filepath.Join(dir, PublicKeyFile), []byte(k.PublicKey().String()+"\n"), 0o644)
	}
	if err != nil {
		return wgtypes.Key{}, err
	}
	k, err := wgtypes.ParseKey(string(trimSpace(b)))
	if err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func loadIdentity(dir string) (tls.Certificate, error) {
	path := filepath.Join(dir, NodeKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		b = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			return tls.Certificate{}, err
		}
	} else if err != nil {
		return tls.Certificate{}, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return tls.Certificate{}, fmt.Errorf("%s: not a PEM key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	priv, ok := key.(ed25519.PrivateKey)
	if err != nil || !ok {
		return tls.Certificate{}, fmt.Errorf("%s: not an ed25519 key", path)
	}
	return api.SelfSigned(priv, "wire-node")
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// NodeID is the seed's identity hash: sha256(hostname + MAC), 32 hex
// characters, from the first interface (by name) with a hardware address.
func NodeID() string {
	host, _ := os.Hostname()
	return hashID(host + firstMAC())
}

// NodeIDFor is the node_id of the node whose state dir is dir. The seed's
// hash named a host, not a node: two nodes on one host (one per network
// namespace, each with its own state dir and interface) would get the same
// one. A node in a default state dir (/etc/wire, ~/.wire) keeps the seed's
// node_id, so that nodes migrating from it keep their records; any other
// state dir is part of the hash.
func NodeIDFor(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil || isDefaultDir(abs) {
		return NodeID()
	}
	host, _ := os.Hostname()
	return hashID(host + firstMAC() + "\x00" + abs)
}

func isDefaultDir(dir string) bool {
	if dir == RootDir {
		return true
	}
	home, err := os.UserHomeDir()
	return err == nil && dir == filepath.Join(home, ".wire")
}

// RootDir is a root node's state dir, as the seed's.
const RootDir = "/etc/wire"

func hashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:32]
}

func firstMAC() string {
	ifs, _ := net.Interfaces()
	sort.Slice(ifs, func(i, j int) bool { return ifs[i].Name < ifs[j].Name })
	for _, i := range ifs {
		if len(i.HardwareAddr) > 0 && i.Flags&net.FlagLoopback == 0 {
			return i.HardwareAddr.String()
		}
	}
	return ""
}
