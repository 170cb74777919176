//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// host is the binaries under test and the machine they ran on.
type host struct {
	wire, wireguardGo string // the binaries
	wireguardVersion  string // of the module both are built from

	date          time.Time
	kernel, cpu   string
	nproc         int
	goVersion     string
	iperf3Version string
}

// buildAll builds wire from the repository, as the release does, and the
// upstream wireguard-go from the same module version that wire embeds,
// with the same flags; and describes the machine.
func buildAll(t *bench) host {
	t.Logf("building wire and wireguard-go")
	root, err := output("go", "env", "GOMOD")
	if err != nil || root == "" || root == os.DevNull {
		t.Fatalf("cannot find the module root (go env GOMOD: %q, %v): run the bench inside the repository", root, err)
	}
	dir := t.TempDir()
	h := host{wire: filepath.Join(dir, "wire"), wireguardGo: filepath.Join(dir, "wireguard-go"), date: time.Now()}
	for _, args := range [][]string{
		{"build", "-trimpath", "-o", h.wire, "."},
		{"build", "-trimpath", "-o", h.wireguardGo, "golang.zx2c4.com/wireguard"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Dir(root)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	h.wireguardVersion, _ = output("go", "list", "-m", "-f", "{{.Version}}", "golang.zx2c4.com/wireguard")
	h.goVersion, _ = output("go", "env", "GOVERSION")
	if v, err := output("iperf3", "--version"); err == nil {
		h.iperf3Version = strings.SplitN(v, "\n", 2)[0]
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.kernel = unix.ByteSliceToString(u.Release[:])
	}
	h.nproc = runtime.NumCPU()
	h.cpu = cpuModel()
	return h
}

// output runs a short command and returns its trimmed stdout.
func output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	return strings.TrimSpace(string(out)), err
}

// cpuModel is the first "model name" in /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// String is the table's header.
func (h host) String() string {
	return fmt.Sprintf("date      %s\nkernel    %s (uname -r)\ncpus      %d (nproc) × %s\ngo        %s\niperf3    %s\nwireguard golang.zx2c4.com/wireguard %s (embedded in wire; stock binary built from it)\n",
		h.date.UTC().Format("2006-01-02 15:04 MST"), h.kernel, h.nproc, h.cpu, h.goVersion, h.iperf3Version, h.wireguardVersion)
}
