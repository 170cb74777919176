package sysdns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// newPlatform picks systemd-resolved where it manages resolv.conf (split
// DNS on wire's interface, nothing else changed), else the file.
func newPlatform(o Options) platform {
	if o.ResolvConf == "" {
		return none{}
	}
	if usesResolved(o.ResolvConf) {
		return &resolved{marker: filepath.Join(o.StateDir, "resolved.iface")}
	}
	return newResolvFile(o)
}

// usesResolved says whether resolv.conf is systemd-resolved's and its
// resolvectl is there to ask.
func usesResolved(path string) bool {
	target, err := filepath.EvalSymlinks(path)
	if err != nil || !strings.HasPrefix(target, "/run/systemd/resolve/") {
		return false
	}
	_, err = exec.LookPath("resolvectl")
	return err == nil
}

// resolved sets wire's interface's DNS server and domain in
// systemd-resolved: queries for the mesh's domain go to wire, all others
// where they went before. The interface's name is kept in the state dir,
// so that a restart after a crash can revert it.
type resolved struct {
	marker string
}

func (r *resolved) mode() string     { return "systemd-resolved" }
func (r *resolved) upstream() string { return "/run/systemd/resolve/resolv.conf" }

func (r *resolved) set(cfg Config) error {
	if err := os.WriteFile(r.marker, []byte(cfg.Interface), 0o644); err != nil {
		return err
	}
	// Not a default route: resolved sends a name that matches no link's
	// domains to every link that is one, and takes a link with DNS servers
	// and no "~" domain for one unless told otherwise.
	if err := resolvectl("default-route", cfg.Interface, "false"); err != nil {
		return err
	}
	// A routing and search domain: NAME.DOMAIN goes to wire, and so does
	// a plain NAME, searched as NAME.DOMAIN.
	if err := resolvectl("domain", cfg.Interface, cfg.Domain); err != nil {
		return err
	}
	// No multicast names on the mesh: WireGuard carries no multicast, so
	// resolved would only wait for answers that never come.
	for _, proto := range []string{"llmnr", "mdns"} {
		if err := resolvectl(proto, cfg.Interface, "no"); err != nil {
			return err
		}
	}
	// The server last: until it is there, the link takes no query.
	return resolvectl("dns", cfg.Interface, cfg.Nameserver.String())
}

func (r *resolved) revert() error {
	iface, err := os.ReadFile(r.marker)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// The interface may be gone with the settings (a userspace engine's
	// TUN goes with its process): then there is nothing to revert.
	if _, err := os.Stat(filepath.Join("/sys/class/net", string(iface))); err == nil {
		if err := resolvectl("revert", string(iface)); err != nil {
			return err
		}
	}
	return os.Remove(r.marker)
}

func resolvectl(args ...string) error {
	out, err := exec.Command("resolvectl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("resolvectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
