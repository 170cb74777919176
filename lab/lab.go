//go:build linux

package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// T is what a lab needs of the test that owns it. *testing.T and
// *testing.B satisfy it, and so can a command that runs a lab outside
// `go test`, with a Cleanup that runs its functions last-in first-out.
type T interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// Lab is one simulated internet: a namespace holding the bridge that every
// public host and router WAN port hangs on, and the namespaces built on it.
// Its methods fail the test that made it, so call them from that test's
// goroutine.
type Lab struct {
	t      T
	prefix string
	logs   string // directory of the process logs
	inet   *NS

	mu     sync.Mutex
	seq    int                   // numbers the ports on bridges
	nss    []*NS                 // in creation order
	public map[netip.Addr]string // public addresses in use, by owner
}

// Gateway is the internet's own address on its bridge: the default route
// of every public host and router. It forwards nothing, so a packet to an
// address outside the simulated internet ends there.
const Gateway = "203.0.113.254"

// Internet is the public address range. Hosts and routers take addresses
// in it, except Gateway.
var Internet = netip.MustParsePrefix("203.0.113.0/24")

// labSeq tells apart the labs of one process.
var labSeq atomic.Int64

// ownedName matches the namespaces of any lab: wl<pid>-<seq>-<name>.
var ownedName = regexp.MustCompile(`^wl([0-9]+)-[0-9]+-`)

// New makes an empty internet, after removing the namespaces that labs of
// processes no longer running left behind. Everything the lab makes goes
// when the test ends: the processes in its namespaces, then the namespaces.
func New(t T) *Lab {
	t.Helper()
	if err := Check(); err != nil {
		t.Fatalf("lab.New: %v (call lab.Require first)", err)
	}
	if err := RemoveStale(); err != nil {
		t.Logf("lab: removing leftovers of earlier runs: %v", err)
	}
	l := &Lab{
		t:      t,
		prefix: fmt.Sprintf("wl%d-%d-", os.Getpid(), labSeq.Add(1)),
		logs:   logDir(t),
		public: map[netip.Addr]string{},
	}
	t.Cleanup(l.close)
	l.inet = l.newNS("inet")
	l.must(ipn(l.inet, "link", "add", "br0", "type", "bridge"))
	l.must(ipn(l.inet, "addr", "add", Gateway+"/24", "dev", "br0"))
	l.must(ipn(l.inet, "link", "set", "br0", "up"))
	l.must(sysctl(l.inet, "net/bridge/bridge-nf-call-iptables", "0"))
	l.public[netip.MustParseAddr(Gateway)] = "the internet's gateway"
	return l
}

// LogsEnv names a directory where labs keep their processes' whole logs,
// for a failure to be read after the test: each lab gets a directory of
// its own in it, named by its test, that is not removed.
const LogsEnv = "WIRE_LAB_LOGS"

// logDir is where a lab's logs go: under LogsEnv if it is set, else in the
// test's temporary directory.
func logDir(t T) string {
	keep := os.Getenv(LogsEnv)
	if keep == "" {
		return t.TempDir()
	}
	name := "lab"
	if n, ok := t.(interface{ Name() string }); ok {
		name = strings.NewReplacer("/", "_", string(os.PathSeparator), "_").Replace(n.Name())
	}
	if err := os.MkdirAll(keep, 0o755); err != nil {
		t.Fatalf("lab: %s: %v", LogsEnv, err)
	}
	dir, err := os.MkdirTemp(keep, name+"-")
	if err != nil {
		t.Fatalf("lab: %s: %v", LogsEnv, err)
	}
	return dir
}

// Prefix is what the names of this lab's namespaces start with.
func (l *Lab) Prefix() string { return l.prefix }

// Inet is the namespace of the internet; its bridge is br0.
func (l *Lab) Inet() *NS { return l.inet }

// must fails the lab's test on an error.
func (l *Lab) must(err error) {
	l.t.Helper()
	if err != nil {
		l.t.Fatalf("lab: %v", err)
	}
}

// nextPort returns a fresh name for a bridge port, unique in the lab.
func (l *Lab) nextPort(kind string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return kind + strconv.Itoa(l.seq)
}

// claimPublic records a public address, failing the test on a clash.
func (l *Lab) claimPublic(ip netip.Addr, owner string) {
	l.t.Helper()
	if !Internet.Contains(ip) || ip == Internet.Addr() || ip.As4()[3] == 255 {
		l.t.Fatalf("lab: %s: public address %s is not a host address in %s", owner, ip, Internet)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if other, ok := l.public[ip]; ok {
		l.t.Fatalf("lab: %s: public address %s is taken by %s", owner, ip, other)
	}
	l.public[ip] = owner
}

// close kills the processes left in the lab's namespaces, by pid, and
// deletes the namespaces, the newest first.
func (l *Lab) close() {
	l.mu.Lock()
	nss := l.nss
	l.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNamespace(nss[i].Name); err != nil {
			l.t.Errorf("lab: cleaning up: %v", err)
		}
	}
	os.Remove(EtcNetns) // if no other lab, nor anyone else, has files there
}

// RemoveStale deletes the namespaces that labs left behind when their
// process died without cleaning up: those named like a lab's whose owner
// process is gone. The namespaces of live processes are left alone.
func RemoveStale() error {
	names, err := Namespaces()
	if err != nil {
		return err
	}
	var errs []string
	for _, name := range names {
		m := ownedName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		if err := deleteNamespace(name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// alive says whether a process with this pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// Namespaces lists the names of all named network namespaces.
func Namespaces() ([]string, error) {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// deleteNamespace kills every process in the namespace, waits until they
// are gone (at most a few seconds), then deletes it.
func deleteNamespace(name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := namespacePids(name)
		if err != nil || len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: processes %v survive SIGKILL", name, pids)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := run("ip", "netns", "delete", name)
	if rerr := os.RemoveAll(filepath.Join(EtcNetns, name)); err == nil {
		err = rerr
	}
	return err
}

// namespacePids lists the processes in a namespace.
func namespacePids(name string) ([]int, error) {
	out, err := run("ip", "netns", "pids", name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
