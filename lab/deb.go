//go:build linux

package lab

import (
	"bytes"
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

// A box gets software this machine does not have from Debian's packages,
// unpacked, never installed: apt-get download and dpkg-deb -x, as the VM
// lab does for its kernel. Their maintainer scripts do not run (that of
// systemd-resolved would replace the machine's /etc/resolv.conf); a test
// does in the box what they would.

// CheckDebs says why Debian packages cannot be fetched here, or returns nil.
func CheckDebs() error {
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb", "dpkg-query", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("fetching Debian packages needs %s (is this Debian?)", tool)
		}
	}
	return nil
}

// Installed is the version of a Debian package installed on this machine,
// or "" if it is not.
func Installed(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", pkg).Output()
	status, version, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if err != nil || status != "installed" {
		return ""
	}
	return version
}

// Candidate is the version of a package that apt would install.
func Candidate(pkg string) (string, error) {
	out, err := exec.Command("apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache show %s: %w (was apt-get update run?)", pkg, err)
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Version: "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("apt knows no version of %s", pkg)
}

// FetchDeb unpacks version of the Debian package pkg into a directory
// under cache and returns it, fetching the package with apt-get download
// unless the cache has it already.
func FetchDeb(cache, pkg, version string) (string, error) {
	dir := filepath.Join(cache, pkg+"_"+strings.ReplaceAll(version, ":", "%3a"))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, ".fetch-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	get := exec.CommandContext(ctx, "apt-get", "download", pkg+"="+version)
	get.Dir = tmp
	if out, err := get.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %v\n%s", pkg, version, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s left %v", pkg, version, debs)
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	if err := os.Rename(root, dir); err != nil { // whole or not at all
		if _, serr := os.Stat(dir); serr == nil {
			return dir, nil // another run unpacked it meanwhile
		}
		return "", err
	}
	return dir, nil
}

// Install copies a directory tree onto the box's root, as dpkg unpacks a
// package: the box's symlinked directories (/lib -> usr/lib) stay links.
// What it writes goes to the box's tmpfs, and vanishes with it.
func (b *SystemdBox) Install(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	var packErr, unpackErr bytes.Buffer
	pack := exec.CommandContext(ctx, "tar", "-C", dir, "-cf", "-", ".")
	pack.Stdout, pack.Stderr = w, &packErr
	unpack := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(b.pid1), "-a", "--",
		"tar", "-C", "/", "--keep-directory-symlink", "--no-overwrite-dir", "-xf", "-")
	unpack.Stdin, unpack.Stderr = r, &unpackErr
	err = pack.Start()
	w.Close()
	if err != nil {
		r.Close()
		return fmt.Errorf("installing %s in the systemd box: %w", dir, err)
	}
	err = unpack.Start()
	r.Close()
	if err != nil {
		pack.Process.Kill()
		pack.Wait()
		return fmt.Errorf("installing %s in the systemd box: %w", dir, err)
	}
	err = errors.Join(pack.Wait(), unpack.Wait())
	if err != nil {
		return fmt.Errorf("installing %s in the systemd box: %w: %s%s", dir, err, packErr.String(), unpackErr.String())
	}
	return nil
}
