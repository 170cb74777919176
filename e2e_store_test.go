package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/server/servertest"
)

// TestStateDirNotWritable: an intact store that this user may not write,
// or that sits on a read-only file system, is reported as such, with the
// path and the fix; never as damaged, whose advice (move it away) would
// wipe a working mesh.
func TestStateDirNotWritable(t *testing.T) {
	dir := sharedTempDir(t)
	newKey(t, dir) // a store, an identity, a key; closed cleanly
	store := filepath.Join(dir, "wire.db")
	before, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	type run struct {
		name string
		cmd  func(args ...string) *exec.Cmd
		want string
	}
	var runs []run
	if os.Geteuid() == 0 {
		// Root may write anything its mode says it may not: run as nobody,
		// on a state dir that nobody may read but not write.
		os.Chmod(dir, 0o755)
		for _, f := range []string{"wire.db", "server.key", "admin.token"} {
			os.Chmod(filepath.Join(dir, f), 0o644)
		}
		runs = append(runs, run{"another user's state dir", func(args ...string) *exec.Cmd {
			cmd := exec.Command(wireBin, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			return cmd
		}, "uid 65534 may not write " + dir})
		if _, err := exec.LookPath("unshare"); err == nil {
			runs = append(runs, run{"read-only file system", func(args ...string) *exec.Cmd {
				// A read-only bind mount in a mount namespace of its own,
				// as systemd's ProtectSystem=strict makes.
				script := `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"`
				return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", dir, wireBin}, args...)...)
			}, "read-only file system"})
		}
	} else {
		os.Chmod(store, 0o444)
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		runs = append(runs, run{"read-only state dir", func(args ...string) *exec.Cmd { return exec.Command(wireBin, args...) }, "may not write " + dir})
	}
	for _, r := range runs {
		for _, args := range [][]string{
			{"server", "--state-dir", dir, "--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"},
			{"server", "key", "create", "--state-dir", dir},
			{"server", "node", "remove", "--state-dir", dir, "somebody"},
		} {
			cmd := r.cmd(args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			msg := stderr.String()
			if err == nil || !strings.Contains(msg, "cannot write the store") || !strings.Contains(msg, r.want) ||
				!strings.Contains(msg, "not damaged") || strings.Contains(msg, "is damaged") {
				t.Errorf("%s: wire %s: %v\n%s\nwant: cannot write the store … %s … not damaged", r.name, args[1], err, msg, r.want)
			}
		}
	}
	if after, _ := os.ReadFile(store); !bytes.Equal(before, after) {
		t.Error("the store was changed")
	}
}

// sharedTempDir is a temporary directory that other users may enter, as
// a test that runs wire as another user needs for the binary and for the
// state dir. t.TempDir's parent is private to its owner.
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wire-shared")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{dir, filepath.Dir(wireBin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestConnectionFloodLowFileLimit: a server with few file descriptors
// stays reachable while an attacker holds more idle connections than the
// limit allows, and its enrolled nodes stay served.
func TestConnectionFloodLowFileLimit(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	dir := t.TempDir()
	k := newKey(t, dir)
	cmd := exec.Command("prlimit", "--nofile=256:256", wireBin, "server", "--state-dir", dir,
		"--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0")
	srv := startServerCmd(t, cmd)
	n := servertest.NewNode(t)
	c := nodeClient(t, srv.url, k, &n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, joinReq("node", n, &k)); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.url, "https://")
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 600 { // more than the 256 descriptors the server has
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 5, byte(i/200), byte(i%200+1))}, Timeout: time.Second}
		conn, err := d.Dial("tcp", host)
		if err != nil {
			continue // the kernel's backlog may be full for a moment
		}
		held = append(held, conn)
	}
	for i := range 16 {
		hctx, hcancel := context.WithTimeout(ctx, 3*time.Second)
		anon, _ := api.NewClient(api.ClientConfig{URL: srv.url, Pin: k.Pin})
		_, err := anon.Health(hctx)
		hcancel()
		anon.CloseIdle()
		if err != nil {
			t.Errorf("/health %d with %d connections held: %v", i, len(held), err)
		}
		hctx, hcancel = context.WithTimeout(ctx, 3*time.Second)
		_, err = c.Register(hctx, joinReq("node", n, nil))
		hcancel()
		if err != nil {
			t.Errorf("heartbeat %d with %d connections held: %v", i, len(held), err)
		}
	}
}
