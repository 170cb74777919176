//go:build linux

// Package vmlab runs the lab's scenarios again in a VM whose kernel has
// WireGuard, on wire's kernel engine. It is a package of its own so that
// the VM, which takes minutes under emulation, has a test binary and a
// time budget of its own.
package vmlab_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wire-mesh/wire/lab"
	"github.com/wire-mesh/wire/lab/vm"
)

// wireBin is the real wire binary, built once by TestMain; buildErr says
// why there is none.
var (
	wireBin  string
	buildErr error
)

func TestMain(m *testing.M) {
	if lab.Check() != nil {
		os.Exit(m.Run()) // the test says why it skips (or fails under CI=true)
	}
	dir, err := os.MkdirTemp("", "wire-vmlab")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wireBin, buildErr = lab.BuildWire(dir, "../..")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// vmScenarios are the lab's tests that run again inside the VM, where the
// kernel has WireGuard, with every node on --engine kernel.
var vmScenarios = []string{
	"TestMeshDirect", "TestMeshJoinToPing", "TestMeshServerOutage", "TestMeshRoaming",
	"TestRelayTopologies", "TestRelayToDirect", "TestRelayServerKilled",
	"TestWgShow", "TestEngineAuto", "TestMixedEngines", "TestAgentsOverMCP", "TestPairCLI", "TestNames", "TestPolicy",
	"TestCrossedHandshakesDelayed",
}

// scenariosEnv names some of vmScenarios (comma-separated) to run in the
// VM instead of all of them, to look into one.
const scenariosEnv = "WIRE_VM_SCENARIOS"

func scenarios() []string {
	if s := os.Getenv(scenariosEnv); s != "" {
		return strings.Split(s, ",")
	}
	return vmScenarios
}

// vmModules are the kernel modules the lab needs in the VM: WireGuard,
// veth and bridges for its namespaces, TUN for userspace nodes, and
// nftables with NAT and conntrack for its routers and for wire's packet
// filter on the kernel engine (nf_tables, nft_ct, nf_conntrack), and netem
// for a path with a delay.
var vmModules = []string{
	"wireguard", "veth", "bridge", "tun",
	"nf_tables", "nft_chain_nat", "nft_masq", "nft_ct", "nf_nat", "nf_conntrack",
	"nf_conntrack_netlink", // for conntrack -D
	"sch_netem",
}

// vmPrograms are the host's programs the lab runs in the VM, copied with
// their libraries; busybox gives it a shell and the rest.
var vmPrograms = []string{"/usr/sbin/ip", "/usr/sbin/nft", "/usr/bin/wg", "/usr/bin/ping", "/usr/sbin/conntrack", "/usr/bin/getent", "/usr/sbin/tc"}

// vmInit is the VM's /init: it mounts what the lab needs, loads the
// modules, runs the lab's test binary on the scenarios with its output on
// the second serial port (test2json's framing, which the host decodes),
// and powers off.
const vmInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /var /root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t tmpfs tmpfs /run
/bin/busybox ln -s /run /var/run
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
stty -F /dev/ttyS1 raw -echo
for m in $(cat /modules); do insmod "$m" || echo "insmod $m failed"; done
ip link set lo up
export CI=true WIRE_LAB_BIN=/usr/local/bin/wire WIRE_LAB_ENGINE=kernel
/lab.test -test.v=test2json -test.count=1 -test.timeout=15m -test.run "$(cat /scenarios)" >/dev/ttyS1 2>&1
echo "lab.test exited $?"
poweroff -f
`

// TestKernelEngineInVM runs lab scenarios again in a VM whose kernel has
// WireGuard, on wire's kernel engine: the build machines' own kernel has
// none. Each scenario's result (and on failure, its output, node logs
// included) comes back through test2json's events.
func TestKernelEngineInVM(t *testing.T) {
	lab.Require(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if err := vm.Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the VM lab must run)", err)
		}
		t.Skipf("%v: skipping the VM lab", err)
	}
	dir := t.TempDir()
	labTest := filepath.Join(dir, "lab.test")
	build := exec.Command("go", "test", "-c", "-o", labTest, ".")
	build.Dir = ".." // the lab's scenarios
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the lab's tests: %v\n%s", err, out)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	k, err := vm.FetchKernel(filepath.Join(cache, "wire-lab"))
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, "initramfs.gz")
	if err := writeVMImage(image, k, labTest); err != nil {
		t.Fatal(err)
	}

	console, err := os.Create(filepath.Join(dir, "console"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Minute)
	defer cancel()
	start := time.Now()
	results, err := vm.Machine{Kernel: k, Initramfs: image, MemoryMB: 1536, CPUs: 2}.Run(ctx, console)
	t.Logf("the VM (kernel %s, %s) ran %v in %v", k.Version, "tcg", scenarios(), time.Since(start).Round(time.Second))
	events, perr := testEvents(results)
	if err != nil || perr != nil || len(events) == 0 {
		c, _ := os.ReadFile(console.Name())
		t.Fatalf("the VM: %v; its results: %v\nconsole:\n%s\nresults:\n%s", err, perr, c, results)
	}
	reportEvents(t, events)
}

// writeVMImage makes the VM's initramfs: busybox, the lab's programs, the
// modules, wire and the lab's test binary.
func writeVMImage(path string, k vm.Kernel, labTest string) error {
	mods, err := k.ModuleFiles(vmModules...)
	if err != nil {
		return err
	}
	im := vm.NewImage()
	im.File("init", 0o755, []byte(vmInit))
	// What ip netns exec mounts a namespace's own resolv.conf over; glibc
	// (2.34 and later) resolves with no NSS modules to copy.
	im.File("etc/resolv.conf", 0o644, []byte("nameserver 127.0.0.1\n"))
	im.File("scenarios", 0o644, []byte("^("+strings.Join(scenarios(), "|")+")$\n"))
	if err := im.HostFile("bin/busybox", busyboxPath()); err != nil {
		return err
	}
	for _, p := range vmPrograms {
		if err := im.Program(p); err != nil {
			return err
		}
	}
	var list []string
	for _, m := range mods {
		guest := "/lib/modules/" + filepath.Base(m)
		if err := im.HostFile(guest, m); err != nil {
			return err
		}
		list = append(list, guest)
	}
	im.File("modules", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	if err := im.HostFile("usr/local/bin/wire", wireBin); err != nil {
		return err
	}
	if err := im.HostFile("lab.test", labTest); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := im.Write(f); err != nil {
		return err
	}
	return f.Close()
}

// busyboxPath is the host's static busybox.
func busyboxPath() string {
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "/bin/busybox"
	}
	return p
}

// testEvent is one of test2json's events.
type testEvent struct {
	Action string
	Test   string
	Output string
}

// testEvents decodes what the VM's test binary wrote with
// -test.v=test2json, through go tool test2json.
func testEvents(raw []byte) ([]testEvent, error) {
	cmd := exec.Command("go", "tool", "test2json", "-p", "lab")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var events []testEvent
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			events = append(events, e)
		}
	}
	return events, sc.Err()
}

// reportEvents makes each scenario the VM ran a subtest here, failing with
// the scenario's output if it failed there, and fails for any scenario
// that did not run.
func reportEvents(t *testing.T, events []testEvent) {
	output := map[string]*strings.Builder{}
	result := map[string]string{}
	for _, e := range events {
		top, _, _ := strings.Cut(e.Test, "/")
		if top == "" {
			continue
		}
		if output[top] == nil {
			output[top] = &strings.Builder{}
		}
		output[top].WriteString(e.Output)
		if e.Test == top && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
			result[top] = e.Action
		}
	}
	for _, name := range scenarios() {
		t.Run(name, func(t *testing.T) {
			switch result[name] {
			case "pass":
				t.Logf("passed in the VM on the kernel engine:\n%s", lastLines(output[name], 8))
			case "":
				t.Errorf("did not run, or did not end, in the VM:\n%s", output[name])
			default:
				t.Errorf("%s in the VM on the kernel engine:\n%s", result[name], output[name])
			}
		})
	}
}

func lastLines(b *strings.Builder, n int) string {
	if b == nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
