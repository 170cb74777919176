//go:build linux

package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// need skips a test the machine cannot run here, or fails it under CI,
// where .ci/run installs what it needs.
func need(t *testing.T) {
	t.Helper()
	err := Check()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: the VM lab must run)", err)
	}
	t.Skipf("%v: skipping the VM", err)
}

// testInit is a machine's /init: it mounts what a system needs, loads the
// modules listed in /modules in order, runs /payload with its output on
// the second serial port, and powers off.
const testInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
for m in $(cat /modules); do insmod "$m" || echo "insmod $m failed" >/dev/ttyS1; done
sh /payload >/dev/ttyS1 2>&1
echo "exit $?" >/dev/ttyS1
poweroff -f
`

// TestBoot boots the cloud kernel with its WireGuard module, and makes a
// WireGuard interface in the machine.
func TestBoot(t *testing.T) {
	need(t)
	cache, _ := os.UserCacheDir()
	k, err := FetchKernel(filepath.Join(cache, "wire-lab"))
	if err != nil {
		t.Fatal(err)
	}
	mods, err := k.ModuleFiles("wireguard")
	if err != nil {
		t.Fatal(err)
	}
	im := NewImage()
	im.File("init", 0o755, []byte(testInit))
	im.File("payload", 0o644, []byte("ip link add wgt type wireguard && ip -o link show wgt && echo WIREGUARD-OK\n"))
	if err := im.HostFile("bin/busybox", "/usr/bin/busybox"); err != nil {
		t.Fatal(err)
	}
	if err := im.Program("/usr/sbin/ip"); err != nil {
		t.Fatal(err)
	}
	var list []string
	for _, m := range mods {
		guest := "/modules.d/" + filepath.Base(m)
		im.HostFile(guest, m)
		list = append(list, guest)
	}
	im.File("modules", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	path := filepath.Join(t.TempDir(), "initramfs.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	console, _ := os.CreateTemp(t.TempDir(), "console")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := Machine{Kernel: k, Initramfs: path, MemoryMB: 512, CPUs: 1}.Run(ctx, console)
	t.Logf("kernel %s, %d modules, booted and powered off in %v", k.Version, len(mods), time.Since(start).Round(time.Millisecond))
	if err != nil || !strings.Contains(string(res), "WIREGUARD-OK") || !strings.Contains(string(res), "exit 0") {
		c, _ := os.ReadFile(console.Name())
		t.Fatalf("machine: %v\nresults:\n%s\nconsole:\n%s", err, res, c)
	}
}
