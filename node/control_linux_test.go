package node

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wire-mesh/wire/internal/roottest"
	"github.com/wire-mesh/wire/server/servertest"
)

// dialAs connects to the unix socket path as user uid. Credentials are a
// thread's in the kernel: a raw setresuid on a locked thread changes that
// thread alone, and the thread is thrown away with its goroutine.
func dialAs(t *testing.T, uid int, path string, n int) []net.Conn {
	t.Helper()
	conns := make(chan []net.Conn)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		var out []net.Conn
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), 0); errno != 0 {
			t.Errorf("setresuid %d: %v", uid, errno)
			conns <- nil
			return
		}
		for range n {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
			}
			if err != nil {
				unix.Close(fd)
				continue // refused: the daemon closed the oldest
			}
			f := os.NewFile(uintptr(fd), "attacker") // f owns fd now
			c, err := net.FileConn(f)                // a dup of it
			f.Close()
			if err == nil {
				out = append(out, c)
			}
		}
		conns <- out
	}()
	return <-conns
}

// An unprivileged user holding many idle connections to the control socket
// (mode 0666) neither uses up the daemon's file descriptors nor keeps
// root's wire status and wire down from getting through.
func TestControlSocketFlood(t *testing.T) {
	roottest.Need(t, "to connect as root and as another user")
	env := servertest.Start(t, "")
	n := startNode(t, env, "", "a", netip.MustParseAddrPort("198.51.100.1:40001"))
	for _, d := range []string{filepath.Dir(n.dir), n.dir} { // as /etc/wire is: others may enter
		os.Chmod(d, 0o755)
	}
	held := dialAs(t, 65534, filepath.Join(n.dir, SocketFile), 300)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if len(held) == 0 {
		t.Fatal("the attacker could not connect at all")
	}
	time.Sleep(100 * time.Millisecond)
	open := 0
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && os.IsTimeout(err) {
			open++
		}
	}
	if open > controlLimits.PerKey {
		t.Errorf("the attacker holds %d connections, want at most %d", open, controlLimits.PerKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 5 {
		if _, err := NewClient(n.dir).Status(ctx); err != nil {
			t.Fatalf("root's wire status during the flood: %v", err)
		}
	}
	if msg, err := Down(ctx, NewClient(n.dir)); err != nil || msg != "wire is down" {
		t.Errorf("root's wire down during the flood: %q, %v", msg, err)
	}
}
