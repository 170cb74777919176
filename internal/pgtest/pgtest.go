// Package pgtest runs a throwaway PostgreSQL cluster, for a test or a
// benchmark: initdb in a temporary directory, listening on a unix socket
// only (no TCP at all), stopped and removed at the end. It uses Debian's
// postgresql package. Without it a test skips, saying so, except under
// CI=true, where it fails.
package pgtest

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx"
)

// Cluster is a running PostgreSQL cluster.
type Cluster struct {
	bin   string   // the directory of initdb, pg_ctl and postgres
	dir   string   // data, socket and log live here
	runAs string   // "postgres" when run as root
	wrap  []string // a command the cluster's programs run under (taskset)
	dbs   atomic.Int32
}

// ErrMissing says PostgreSQL is not installed (or, as root, has no user
// to run as).
var ErrMissing = errors.New("PostgreSQL is not installed")

// Launch initdbs and starts a cluster. Its programs run under wrap, if
// given (e.g. taskset -c 0). Close stops and removes it.
func Launch(wrap ...string) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, wrap: wrap}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: run the cluster as Debian's user.
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("%w: as root, the cluster runs as the user postgres, and there is none (Debian's postgresql package makes it)", ErrMissing)
		}
		c.runAs = "postgres"
	}
	removeLeftovers(bin)
	// Not a test's TempDir: its parents are private to root, and the
	// cluster may run as another user.
	if c.dir, err = os.MkdirTemp("", fmt.Sprintf("wire-pg-%d-", os.Getpid())); err != nil {
		return nil, err
	}
	if c.runAs != "" {
		if out, err := exec.Command("chown", c.runAs, c.dir).CombinedOutput(); err != nil {
			c.Close()
			return nil, fmt.Errorf("chown %s: %v: %s", c.dir, err, out)
		}
	}
	if err := c.run("initdb", "-D", c.data(), "-U", "wire", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Resume(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Start launches a cluster for t, stopped and removed when t ends. Without
// PostgreSQL it skips t, or fails it under CI=true.
func Start(t testing.TB) *TestCluster {
	t.Helper()
	c, err := Launch()
	switch {
	case errors.Is(err, ErrMissing) && os.Getenv("CI") == "true":
		t.Fatalf("%v (CI=true: the PostgreSQL tests must run; .ci/run installs postgresql)", err)
	case errors.Is(err, ErrMissing):
		t.Skipf("%v: skipping the PostgreSQL test", err)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &TestCluster{c, t}
}

// TestCluster is a Cluster of a test, whose errors fail it.
type TestCluster struct {
	*Cluster
	t testing.TB
}

// NewDB creates an empty database and returns its URL.
func (c *TestCluster) NewDB() string {
	c.t.Helper()
	u, err := c.CreateDB()
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

// Stop stops the cluster as a crash would.
func (c *TestCluster) Stop() {
	c.t.Helper()
	if err := c.Crash(); err != nil {
		c.t.Fatal(err)
	}
}

// Start starts the stopped cluster again.
func (c *TestCluster) Start() {
	c.t.Helper()
	if err := c.Resume(); err != nil {
		c.t.Fatal(err)
	}
}

// findBin finds the newest installed PostgreSQL's programs.
func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%w: there is no initdb (Debian package postgresql)", ErrMissing)
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Version is the PostgreSQL major version that runs.
func (c *Cluster) Version() string { return "PostgreSQL " + strconv.Itoa(version(c.bin)) }

// Pids are the cluster's processes: the postmaster and its children.
func (c *Cluster) Pids() []int {
	pm := c.Pid()
	if pm == 0 {
		return nil
	}
	pids := []int{pm}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscan(string(b[i+1:]), &state, &ppid); err == nil && ppid == pm {
			pid, _ := strconv.Atoi(string(bytes.Fields(b)[0]))
			pids = append(pids, pid)
		}
	}
	return pids
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// Resume starts the stopped cluster and waits until it accepts
// connections.
func (c *Cluster) Resume() error {
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -c fsync=off -c max_connections=200", c.dir)
	return c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
}

// Crash stops the cluster at once, as a crash would (immediate mode).
func (c *Cluster) Crash() error {
	return c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
}

// CreateDB creates an empty database and returns its URL.
func (c *Cluster) CreateDB() (string, error) {
	name := fmt.Sprintf("wire%d", c.dbs.Add(1))
	db, err := sql.Open("pgx", c.url("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("CREATE DATABASE %s: %w", name, err)
	}
	return c.url(name), nil
}

// url is a URL of the database name over the cluster's socket.
func (c *Cluster) url(name string) string {
	q := url.Values{"host": {c.dir}, "sslmode": {"disable"}}
	return "postgres://wire@/" + name + "?" + q.Encode()
}

// Pid is the postmaster's process id, or 0.
func (c *Cluster) Pid() int {
	b, err := os.ReadFile(filepath.Join(c.data(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(bytes.SplitN(b, []byte("\n"), 2)[0]))
	return pid
}

func (c *Cluster) run(prog string, args ...string) error {
	cmd := c.command(filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("%s %v: %v\n%s%s", prog, args, err, out.String(), log)
	}
	return nil
}

// command runs prog as the cluster's user, under its wrapper.
func (c *Cluster) command(prog string, args ...string) *exec.Cmd {
	argv := append([]string{prog}, args...)
	if c.runAs != "" {
		argv = append([]string{"runuser", "-u", c.runAs, "--"}, argv...)
	}
	argv = append(append([]string(nil), c.wrap...), argv...)
	return exec.Command(argv[0], argv[1:]...)
}

// Close stops the cluster if it runs and deletes its directory.
func (c *Cluster) Close() {
	c.command(filepath.Join(c.bin, "pg_ctl"), "-D", c.data(), "-m", "immediate", "-w", "stop").Run() // not running: nothing to do
	os.RemoveAll(c.dir)
}

var leftover = regexp.MustCompile(`^wire-pg-(\d+)-`)

// removeLeftovers stops and removes the clusters of processes that died
// before their cleanup ran; those of live processes are theirs.
func removeLeftovers(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "wire-pg-*"))
	for _, d := range dirs {
		m := leftover.FindStringSubmatch(filepath.Base(d))
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue
		}
		c := &Cluster{bin: bin, dir: d}
		if os.Geteuid() == 0 {
			c.runAs = "postgres"
		}
		c.Close()
	}
}
