package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/service"
	"github.com/wire-mesh/wire/service/servicetest"
)

func TestServiceSystemd(t *testing.T) {
	unit := service.Systemd(Service("/usr/local/bin/wire", "/etc/wire"))
	for _, want := range []string{
		"ExecStart=/usr/local/bin/wire up --foreground --state-dir /etc/wire\n",
		"Restart=on-failure\n", // wire down exits 0 and must stay down
		"RestartSec=2\n",
		"After=network-online.target\n",
		"Wants=network-online.target\n",
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	// It creates interfaces, routes and kernel peers: no sandbox.
	for _, bad := range []string{"CapabilityBoundingSet", "ProtectSystem", "PrivateDevices", "Type=notify"} {
		if strings.Contains(unit, bad) {
			t.Errorf("unit has %s:\n%s", bad, unit)
		}
	}
	if s := Service("/bin/wire", "/etc/wire"); s.Unit() != ServiceName {
		t.Errorf("the service's unit is %s, but ServiceName (which wire_watchdog asks systemctl about) is %s", s.Unit(), ServiceName)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	servicetest.Verify(t, ServiceName, service.Systemd(Service(self, t.TempDir())))
}

func TestServiceLaunchd(t *testing.T) {
	dir := "/etc/wire"
	got := servicetest.Plist(t, service.Launchd(Service("/usr/local/bin/wire", dir))).(map[string]any)
	want := map[string]any{
		"Label":            "com.wire-mesh.wire",
		"ProgramArguments": []any{"/usr/local/bin/wire", "up", "--foreground", "--state-dir", dir},
		"RunAtLoad":        true,
		// wire down makes the daemon exit 0: launchd leaves it stopped.
		"KeepAlive":        map[string]any{"SuccessfulExit": false},
		"ThrottleInterval": int64(2),
		// LastLogLine reads it when the daemon does not come up.
		"StandardOutPath":   filepath.Join(dir, LogFile),
		"StandardErrorPath": filepath.Join(dir, LogFile),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plist (-want +got):\n%s", diff)
	}
}

// wire down stops the service only if it runs this state dir's daemon: a
// wire down for another node on the host, or a test's, must not stop it.
func TestServiceRunsDir(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "wire.service")
	os.WriteFile(unit, []byte(service.Systemd(Service("/usr/local/bin/wire", "/etc/wire"))), 0o644)
	for _, tt := range []struct {
		dir  string
		want bool
	}{
		{"/etc/wire", true},
		{"/etc/wire/", true},
		{"/etc/wir", false},
		{"/etc/wire2", false},
		{dir, false},
	} {
		if got := serviceRuns(unit, tt.dir); got != tt.want {
			t.Errorf("serviceRuns(unit for /etc/wire, %s) = %v, want %v", tt.dir, got, tt.want)
		}
	}
	if serviceRuns(filepath.Join(dir, "none.service"), "/etc/wire") {
		t.Error("a unit that is not there runs /etc/wire")
	}
	plist := filepath.Join(dir, "com.wire-mesh.wire.plist")
	os.WriteFile(plist, []byte(service.Launchd(Service("/usr/local/bin/wire", "/srv/my node"))), 0o644)
	if !serviceRuns(plist, "/srv/my node") || serviceRuns(plist, "/srv/my") {
		t.Error("the plist's state dir is not told apart")
	}
}

// A daemon that exits before it is up is reported once, with how it
// exited and its last words, not "exited (<nil>): wire: ...".
func TestWaitUpSaysWhy(t *testing.T) {
	if service.Available() {
		t.Skip("this machine runs systemd: the daemon's last words would come from its journal")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, LogFile), []byte("starting\nwire: UDP port 51820 is in use: pass --port\n"), 0o644)
	exited := make(chan string, 1)
	exited <- "exit status 1"
	_, err := WaitUp(context.Background(), dir, exited)
	want := "the daemon exited (exit status 1): UDP port 51820 is in use: pass --port"
	if err == nil || err.Error() != want {
		t.Errorf("WaitUp = %v, want %q", err, want)
	}
}
