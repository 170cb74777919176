// Package pgtest runs a throwaway PostgreSQL cluster for a test: initdb in
// a temporary directory, listening on a unix socket only (no TCP at all),
// stopped and removed when the test ends. It uses Debian's postgresql
// package; without it the test skips, saying so, except under CI=true,
// where it fails.
package pgtest

import (
	"bytes"
	"database/sql"
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

// Cluster is a running PostgreSQL cluster of one test.
type Cluster struct {
	t     testing.TB
	bin   string // the directory of initdb, pg_ctl and postgres
	dir   string // data, socket and log live here
	runAs string // "postgres" when the test runs as root
	dbs   atomic.Int32
}

// Start initdbs and starts a cluster, or skips t (fails it under CI=true)
// if PostgreSQL is not installed.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin, err := findBin()
	if err != nil {
		need(t, err.Error())
	}
	c := &Cluster{t: t, bin: bin}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: run the cluster as Debian's user.
		if _, err := user.Lookup("postgres"); err != nil {
			need(t, "the PostgreSQL tests run the cluster as the user postgres when run as root, and there is none (Debian's postgresql package makes it)")
		}
		c.runAs = "postgres"
	}
	removeLeftovers(t, bin)
	// Not t.TempDir: its parents are private to root, and the cluster may
	// run as another user.
	c.dir, err = os.MkdirTemp("", fmt.Sprintf("wire-pg-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.remove)
	if c.runAs != "" {
		if out, err := exec.Command("chown", c.runAs, c.dir).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v: %s", c.dir, err, out)
		}
	}
	c.run("initdb", "-D", c.data(), "-U", "wire", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	c.Start()
	return c
}

func need(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: the PostgreSQL tests must run; .ci/run installs postgresql)", why)
	}
	t.Skipf("%s: skipping the PostgreSQL test", why)
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
	return "", fmt.Errorf("PostgreSQL's initdb is not installed (Debian package postgresql)")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func (c *Cluster) data() string   { return filepath.Join(c.dir, "data") }
func (c *Cluster) socket() string { return c.dir }

// Start starts the (stopped) cluster and waits until it accepts
// connections.
func (c *Cluster) Start() {
	c.t.Helper()
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -c fsync=off -c max_connections=200", c.socket())
	c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
}

// Stop stops the cluster at once, as a crash would (immediate mode).
func (c *Cluster) Stop() {
	c.t.Helper()
	c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
}

// NewDB creates an empty database and returns its URL.
func (c *Cluster) NewDB() string {
	c.t.Helper()
	name := fmt.Sprintf("wire%d", c.dbs.Add(1))
	db, err := sql.Open("pgx", c.url("postgres"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		c.t.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	return c.url(name)
}

// url is a URL of the database name over the cluster's socket.
func (c *Cluster) url(name string) string {
	q := url.Values{"host": {c.socket()}, "sslmode": {"disable"}}
	return "postgres://wire@/" + name + "?" + q.Encode()
}

func (c *Cluster) run(prog string, args ...string) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", cmd.Path}, args...)...)
	}
	cmd.Dir = c.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("%s %v: %v\n%s%s", prog, args, err, out.String(), c.log())
	}
}

func (c *Cluster) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "log"))
	return string(b)
}

// remove stops the cluster if it runs and deletes its directory.
func (c *Cluster) remove() {
	stop(c.bin, c.runAs, c.data())
	os.RemoveAll(c.dir)
}

func stop(bin, runAs, data string) {
	args := []string{"-D", data, "-m", "immediate", "-w", "stop"}
	cmd := exec.Command(filepath.Join(bin, "pg_ctl"), args...)
	if runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", runAs, "--", cmd.Path}, args...)...)
	}
	cmd.Run() // not running: nothing to do
}

var leftover = regexp.MustCompile(`^wire-pg-(\d+)-`)

// removeLeftovers stops and removes the clusters of test processes that
// died before their cleanup ran; those of live processes are theirs.
func removeLeftovers(t testing.TB, bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "wire-pg-*"))
	for _, d := range dirs {
		m := leftover.FindStringSubmatch(filepath.Base(d))
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue
		}
		runAs := ""
		if os.Geteuid() == 0 {
			runAs = "postgres"
		}
		stop(bin, runAs, filepath.Join(d, "data"))
		if err := os.RemoveAll(d); err != nil {
			t.Logf("removing leftover cluster %s: %v", d, err)
		}
	}
}
