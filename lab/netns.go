//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// NS is one network namespace of a lab: a host on the internet, a node on
// a router's LAN, a router, or the internet itself.
type NS struct {
	Name   string     // the namespace's own name, with the lab's prefix
	Short  string     // the name given to the lab
	IP     netip.Addr // its address: public, a node's LAN address, or a router's WAN address
	Iface  string     // the interface holding IP: "eth0", or "wan" on a router
	Router *Router    // the router whose LAN a node is on; nil on the internet

	lab *Lab
}

// String is the short name.
func (n *NS) String() string { return n.Short }

var shortName = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

// newNS adds a namespace with its loopback up.
func (l *Lab) newNS(short string) *NS {
	l.t.Helper()
	if !shortName.MatchString(short) {
		l.t.Fatalf("lab: namespace name %q: want a lowercase letter, then up to 15 letters or digits", short)
	}
	n := &NS{Name: l.prefix + short, Short: short, lab: l}
	l.mu.Lock()
	for _, o := range l.nss {
		if o.Short == short {
			l.mu.Unlock()
			l.t.Fatalf("lab: there is already a namespace named %q", short)
		}
	}
	l.nss = append(l.nss, n) // before it exists, so that close removes it
	l.mu.Unlock()
	l.must(ownResolvConf(n.Name))
	_, err := run("ip", "netns", "add", n.Name)
	l.must(err)
	l.must(ipn(n, "link", "set", "lo", "up"))
	return n
}

// EtcNetns is where ip netns exec finds files to mount over /etc's for
// the commands it runs in a namespace.
const EtcNetns = "/etc/netns"

// ownResolvConf gives a namespace a resolv.conf of its own, which ip
// netns exec mounts over /etc/resolv.conf for everything run in it: a
// daemon that points the system's resolver at wire's changes that one,
// never the host's. It names only loopback, so no lookup leaves the
// namespace.
func ownResolvConf(ns string) error {
	dir := filepath.Join(EtcNetns, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(LabResolvConf), 0o644)
}

// LabResolvConf is a lab namespace's resolv.conf until a daemon changes it.
const LabResolvConf = "# a wire lab namespace's own\nnameserver 127.0.0.1\n"

// RunTimeout bounds each command that Run runs.
const RunTimeout = 30 * time.Second

// Command is args run inside the namespace (ip netns exec), ended when ctx
// ends. The namespace gets its own view of /sys, so /sys/class/net lists
// its interfaces.
func Command(ctx context.Context, ns *NS, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.WaitDelay = time.Second
	return cmd
}

// Run runs a short command inside the namespace for at most RunTimeout and
// returns its combined output. The error has the command, how it ended and
// its output.
func Run(ns *NS, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	return RunContext(ctx, ns, args...)
}

// RunContext is Run, ended when ctx ends.
func RunContext(ctx context.Context, ns *NS, args ...string) (string, error) {
	out, err := Command(ctx, ns, args...).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return string(out), fmt.Errorf("in %s: %s: %w: %s", ns.Short, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Ping sends one ping from the namespace to addr and waits a second for
// the answer.
func (n *NS) Ping(addr string) error {
	_, err := Run(n, "ping", "-n", "-c1", "-W1", addr)
	return err
}

// Pids lists the processes running in the namespace.
func (n *NS) Pids() ([]int, error) { return namespacePids(n.Name) }

// Counters are an interface's statistics, from /sys/class/net/IF/statistics.
type Counters struct {
	RxBytes, TxBytes, RxPackets, TxPackets uint64
}

// Sub is the growth since an earlier reading.
func (c Counters) Sub(old Counters) Counters {
	return Counters{c.RxBytes - old.RxBytes, c.TxBytes - old.TxBytes, c.RxPackets - old.RxPackets, c.TxPackets - old.TxPackets}
}

// Counters reads an interface's byte and packet counters.
func (n *NS) Counters(iface string) (Counters, error) {
	dir := "/sys/class/net/" + iface + "/statistics/"
	out, err := Run(n, "cat", dir+"rx_bytes", dir+"tx_bytes", dir+"rx_packets", dir+"tx_packets")
	if err != nil {
		return Counters{}, err
	}
	f := strings.Fields(out)
	if len(f) != 4 {
		return Counters{}, fmt.Errorf("in %s: statistics of %s: %q", n.Short, iface, out)
	}
	var v [4]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
			return Counters{}, fmt.Errorf("in %s: statistics of %s: %w", n.Short, iface, err)
		}
	}
	return Counters{v[0], v[1], v[2], v[3]}, nil
}

// run runs a command in the host's namespace, for at most RunTimeout. The
// lab uses it only for ip and nft commands aimed at its own namespaces.
func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ipn runs `ip -n NS args...`.
func ipn(n *NS, args ...string) error {
	_, err := run(append([]string{"ip", "-n", n.Name}, args...)...)
	return err
}

// sysctl sets a key under /proc/sys inside the namespace, if the kernel
// has it. (Writing the file spares the lab the procps package.)
func sysctl(n *NS, key, value string) error {
	if strings.ContainsAny(key+value, "'\\ ") {
		return errors.New("sysctl: bad key or value")
	}
	f := "/proc/sys/" + key
	_, err := Run(n, "sh", "-c", fmt.Sprintf("[ ! -e '%s' ] || echo '%s' > '%s'", f, value, f))
	return err
}
