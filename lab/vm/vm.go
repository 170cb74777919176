//go:build linux

package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Machine is one run of the virtual machine.
type Machine struct {
	Kernel    Kernel
	Initramfs string // the image, written with Image.Write
	MemoryMB  int
	CPUs      int
	// Accel is QEMU's accelerator: "tcg" (software, what works under
	// nested virtualisation on these machines) or "kvm".
	Accel string
}

// Run boots the machine and waits for it to power off, at most until ctx
// ends. The machine's console (its first serial port) goes to console;
// what it writes to its second serial port, /dev/ttyS1, is returned: the
// structured results of what it ran. QEMU gets no network device, so the
// machine reaches nothing outside itself.
func (m Machine) Run(ctx context.Context, console *os.File) ([]byte, error) {
	dir, err := os.MkdirTemp("", "wire-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	results := filepath.Join(dir, "results")
	accel, cpu := m.Accel, "max"
	if accel == "" {
		accel = "tcg"
	}
	if accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-machine", "q35", "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(max(m.MemoryMB, 512)), "-smp", strconv.Itoa(max(m.CPUs, 1)),
		"-kernel", m.Kernel.Image, "-initrd", m.Initramfs,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
		"-nographic", "-no-reboot", "-nodefaults", "-nic", "none",
		"-serial", "file:" + filepath.Join(dir, "console"),
		"-serial", "file:" + results,
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	out, runErr := cmd.CombinedOutput()
	if c, err := os.ReadFile(filepath.Join(dir, "console")); err == nil && console != nil {
		console.Write(c)
	}
	res, _ := os.ReadFile(results)
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("vm: the machine did not power off in time: %w", ctx.Err())
	case runErr != nil:
		return res, fmt.Errorf("vm: qemu: %v: %s", runErr, strings.TrimSpace(string(out)))
	}
	return res, nil
}

// ErrNoQEMU says qemu-system-x86_64 is missing.
var ErrNoQEMU = errors.New("vm: qemu-system-x86_64 is missing (Debian package qemu-system-x86)")

// Check says why a machine cannot run here, or returns nil.
func Check() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return ErrNoQEMU
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb", "ldd", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("vm: %s is missing (the machine is made from Debian's packages with it)", tool)
		}
	}
	return nil
}
