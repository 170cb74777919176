//go:build linux

// Package vm boots a small Linux virtual machine under QEMU for the lab:
// a Debian cloud kernel, whose modules include WireGuard, and an
// initramfs made here of the host's own binaries, so that wire's kernel
// engine runs for real on machines whose own kernel has no WireGuard.
// Everything comes from Debian's packages through apt; nothing else is
// downloaded. The machine has no network but its loopback and what it
// makes inside itself.
package vm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KernelPackage is the Debian meta-package whose kernel the machine boots.
const KernelPackage = "linux-image-cloud-amd64"

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Version string // the kernel release, as uname -r says it
	Image   string // vmlinuz
	Modules string // lib/modules/VERSION
}

// FetchKernel unpacks the kernel that KernelPackage depends on into
// cache, fetching its package with apt-get download unless the cache
// already has that version: runs on one machine share it, and nothing is
// shared across machines.
func FetchKernel(cache string) (Kernel, error) {
	pkg, err := kernelPackage()
	if err != nil {
		return Kernel{}, err
	}
	dir := filepath.Join(cache, pkg)
	if k, err := unpacked(dir); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Kernel{}, err
	}
	tmp, err := os.MkdirTemp(cache, ".fetch-")
	if err != nil {
		return Kernel{}, err
	}
	defer os.RemoveAll(tmp)
	get := exec.Command("apt-get", "download", pkg)
	get.Dir = tmp
	if out, err := get.CombinedOutput(); err != nil {
		return Kernel{}, fmt.Errorf("vm: apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return Kernel{}, fmt.Errorf("vm: apt-get download %s left %v", pkg, debs)
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return Kernel{}, fmt.Errorf("vm: dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	os.RemoveAll(dir)
	if err := os.Rename(root, dir); err != nil { // whole or not at all
		return Kernel{}, err
	}
	return unpacked(dir)
}

// kernelPackage is the package KernelPackage depends on now, such as
// linux-image-6.1.0-57-cloud-amd64.
func kernelPackage() (string, error) {
	out, err := exec.Command("apt-cache", "depends", KernelPackage).Output()
	if err != nil {
		return "", fmt.Errorf("vm: apt-cache depends %s: %w (is this Debian, with apt-get update run?)", KernelPackage, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return "", fmt.Errorf("vm: %s depends on no kernel package:\n%s", KernelPackage, out)
}

func unpacked(dir string) (Kernel, error) {
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return Kernel{}, errors.New("vm: no kernel unpacked in " + dir)
	}
	version := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	mods := filepath.Join(dir, "lib", "modules", version)
	if _, err := os.Stat(filepath.Join(mods, "kernel")); err != nil {
		return Kernel{}, err
	}
	return Kernel{Version: version, Image: images[0], Modules: mods}, nil
}
