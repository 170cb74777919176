package node

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnit(t *testing.T) {
	unit := Unit("/usr/local/bin/wire", "/etc/wire")
	for _, want := range []string{
		"ExecStart=/usr/local/bin/wire up --foreground --state-dir /etc/wire\n",
		"Restart=on-failure\n", // wire down exits 0 and must stay down
		"After=network-online.target\n",
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		return // nothing more to check it with on this machine
	}
	path := filepath.Join(t.TempDir(), ServiceName)
	if err := writeFileAtomic(path, []byte(Unit("/bin/true", "/etc/wire")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
