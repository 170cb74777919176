package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
