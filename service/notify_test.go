package service

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	testNotify(t, filepath.Join(t.TempDir(), "notify"))
}

// testNotify has Notify send READY=1 to a socket at addr, as systemd
// listens for it.
func testNotify(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", addr)
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("Notify to %s: %v", addr, err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if got := string(buf[:n]); err != nil || got != "READY=1" {
		t.Errorf("%s received %q, %v; want READY=1", addr, got, err)
	}
}

func TestNotifyWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Errorf("Notify without $NOTIFY_SOCKET: %v, want nothing done", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := Notify("READY=1"); err == nil {
		t.Error("Notify to a socket that does not exist: no error")
	}
}
