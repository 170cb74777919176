//go:build linux

package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SystemdBox is a machine whose init is systemd, for testing what wire
// installs as services on the machines that run it. systemd runs as PID 1
// in namespaces of its own (pid, mount, network, uts, ipc, cgroup), on an
// overlay of / whose writes go to a tmpfs and vanish with the box (the
// host's own wire state and units are hidden in it), with
// loopback as its only network, in cgroups made for it, and with the units
// that would reach past it masked: sysctl and kernel modules (global),
// udev, and tmpfiles, whose boot-time clean-up would empty a shared /tmp.
type SystemdBox struct {
	t       T
	unshare *exec.Cmd
	pid1    int      // systemd, as this machine sees it
	mnt     string   // the host directory the box's tmpfs is mounted on
	cgroups []string // the cgroup made for the box in each hierarchy
}

// masked are the units the box must not run.
var masked = []string{
	"systemd-sysctl.service", "systemd-modules-load.service",
	"systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
	"systemd-tmpfiles-clean.service", "systemd-tmpfiles-clean.timer",
	"systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udev-settle.service",
	"systemd-remount-fs.service", "systemd-logind.service", "systemd-timesyncd.service",
	"getty.target", "console-getty.service", "ssh.service", "ssh.socket",
	"apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer",
}

// bootScript runs in the box's fresh namespaces: it builds the root (an
// overlay of / on a tmpfs at $1, with /usr/local/bin/wire from $2), makes
// it the root, and becomes systemd.
const bootScript = `set -e
mount --make-rprivate /
mount -t tmpfs wirelab "$1"
mkdir "$1/upper" "$1/work" "$1/root"
mount -t overlay wirelab -o "lowerdir=/,upperdir=$1/upper,workdir=$1/work" "$1/root"
R="$1/root"
mount --rbind /dev "$R/dev"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/usr/local/bin" "$R/etc/systemd/system"
cp "$2" "$R/usr/local/bin/wire"
# The host's own wire state and units stay the host's: removed in the
# overlay, which whites them out in the tmpfs and leaves / as it is.
rm -rf "$R/etc/wire" "$R/var/lib/wire" "$R/etc/systemd/system/wire.service" "$R/etc/systemd/system/wire-server.service" \
	"$R"/etc/systemd/system/*.wants/wire.service "$R"/etc/systemd/system/*.wants/wire-server.service
shift 2
for unit in "$@"; do ln -sf /dev/null "$R/etc/systemd/system/$unit"; done
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
mount -t proc proc /proc
umount -l /.oldroot
exec env container=wirelab /lib/systemd/systemd --system --log-target=console --log-level=warning --unit=basic.target
`

// CheckSystemd says why a SystemdBox cannot boot here, or returns nil.
func CheckSystemd() error {
	if err := Check(); err != nil {
		return err
	}
	for _, tool := range []struct{ path, pkg string }{
		{"/lib/systemd/systemd", "systemd"}, {"unshare", "util-linux"}, {"nsenter", "util-linux"},
	} {
		if _, err := exec.LookPath(tool.path); err != nil {
			return fmt.Errorf("a systemd box needs %s (Debian package %s)", tool.path, tool.pkg)
		}
	}
	return nil
}

// BootSystemd boots a box with wire at /usr/local/bin/wire and waits until
// systemd says it is running. The box goes when the test ends.
func BootSystemd(t T, wire string) *SystemdBox {
	t.Helper()
	b := &SystemdBox{t: t}
	t.Cleanup(b.close)
	var err error
	if b.mnt, err = os.MkdirTemp("", "wirelab-systemd-"); err != nil {
		t.Fatalf("systemd box: %v", err)
	}
	if err := b.makeCgroups(); err != nil {
		t.Fatalf("systemd box: %v", err)
	}
	// The cgroup namespace is made by unshare, so unshare must already be
	// in the box's cgroups: sh joins them, then execs it.
	join := "for g in \"$@\"; do echo $$ > \"$g/cgroup.procs\"; done; exec unshare --pid --mount --net --uts --ipc --cgroup --fork sh -c " + shellQuote(bootScript) + " boot " + shellQuote(b.mnt) + " " + shellQuote(wire)
	for _, u := range masked {
		join += " " + u
	}
	b.unshare = exec.Command("sh", append([]string{"-c", join, "join"}, b.cgroups...)...)
	log, err := os.CreateTemp("", "wirelab-systemd-*.log")
	if err != nil {
		t.Fatalf("systemd box: %v", err)
	}
	defer os.Remove(log.Name())
	defer log.Close()
	b.unshare.Stdout, b.unshare.Stderr = log, log
	b.unshare.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := b.unshare.Start(); err != nil {
		t.Fatalf("systemd box: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.pid1 == 0 || !b.running() {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("systemd box did not come up in 30s:\n%s", out)
		}
		if b.pid1 == 0 {
			b.pid1 = childOf(b.unshare.Process.Pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return b
}

// running says whether systemd has finished booting.
func (b *SystemdBox) running() bool {
	out, _ := b.Run(5*time.Second, "systemctl", "is-system-running")
	state := strings.TrimSpace(out)
	return state == "running" || state == "degraded"
}

// Run runs a command in the box, as root, and returns its output (stdout
// and stderr).
func (b *SystemdBox) Run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(b.pid1), "-a", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in the systemd box: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// close kills the box (every process in a pid namespace dies with its
// PID 1; the mounts and the tmpfs with the last of them) and removes its
// cgroups and mount point.
func (b *SystemdBox) close() {
	if b.pid1 != 0 {
		syscall.Kill(b.pid1, syscall.SIGKILL)
	}
	if b.unshare != nil && b.unshare.Process != nil {
		b.unshare.Process.Kill()
		b.unshare.Wait()
	}
	for i := len(b.cgroups) - 1; i >= 0; i-- {
		if err := removeCgroup(b.cgroups[i]); err != nil {
			b.t.Errorf("systemd box: %v", err)
		}
	}
	if b.mnt != "" {
		os.Remove(b.mnt)
	}
}

// makeCgroups makes a cgroup for the box in every cgroup hierarchy, below
// this process's own, so that what systemd makes goes there.
func (b *SystemdBox) makeCgroups() error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	name := fmt.Sprintf("wirelab-%d", os.Getpid())
	for _, m := range mounts {
		dir := filepath.Join(m, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		b.cgroups = append(b.cgroups, dir)
		// A v1 cpuset cgroup takes no process until it has CPUs and memory.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(m, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// cgroupMounts are the directories of this process's cgroups, one per
// mounted hierarchy (v1 controllers and the unified v2 tree).
func cgroupMounts() ([]string, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths := map[string]string{} // controllers (or "" for v2) -> path
	for line := range strings.Lines(string(own)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 {
			paths[f[1]] = f[2]
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer mi.Close()
	var dirs []string
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		var key string
		switch tail[0] {
		case "cgroup2":
			key = ""
		case "cgroup":
			// v1 keys in /proc/self/cgroup are the comma-joined controllers.
			for k := range paths {
				if k != "" && sameControllers(k, tail[2]) {
					key = k
				}
			}
			if key == "" {
				continue
			}
		default:
			continue
		}
		if p, ok := paths[key]; ok {
			dirs = append(dirs, filepath.Join(fields[4], p))
		}
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted")
	}
	return dirs, sc.Err()
}

// sameControllers says whether every controller named in key (as
// /proc/self/cgroup lists them, "cpu,cpuacct") is among a cgroup mount's
// options.
func sameControllers(key, options string) bool {
	opts := strings.Split(options, ",")
	for _, c := range strings.Split(key, ",") {
		if !slices.Contains(opts, c) {
			return false
		}
	}
	return true
}

// removeCgroup removes a cgroup and every cgroup below it, deepest first,
// waiting a little for their processes to be gone.
func removeCgroup(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err = nil
		for i := len(dirs) - 1; i >= 0; i-- {
			if e := os.Remove(dirs[i]); e != nil && !errors.Is(e, os.ErrNotExist) {
				err = e
			}
		}
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// childOf is the first child of a process, or 0.
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	child, _ := strconv.Atoi(f[0])
	return child
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
