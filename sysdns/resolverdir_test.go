package sysdns

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolverDir is the macOS mode on plain files: wire's file for the
// domain, a domain change moving it, a file that is not wire's refused,
// and revert (also by a new manager after a crash) removing only wire's.
func TestResolverDir(t *testing.T) {
	dir, state := filepath.Join(t.TempDir(), "resolver"), t.TempDir()
	r := &resolverDir{dir: dir, marker: filepath.Join(state, "resolver.domain")}
	c := Config{Interface: "utun4", Nameserver: netip.MustParseAddr("10.99.0.2"), Domain: "wire"}
	if err := r.set(c); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "wire")); string(b) != resolverHeader+"nameserver 10.99.0.2\n" {
		t.Errorf("/etc/resolver/wire:\n%s", b)
	}
	c.Domain = "mesh"
	if err := r.set(c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "wire")); !os.IsNotExist(err) {
		t.Errorf("the old domain's file stays after a domain change: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "corp"), []byte("nameserver 192.0.2.53\n"), 0o644)
	c.Domain = "corp"
	if err := r.set(c); err == nil || !strings.Contains(err.Error(), "is not wire's") {
		t.Errorf("set over another's file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "corp")); string(b) != "nameserver 192.0.2.53\n" {
		t.Errorf("another's file changed: %s", b)
	}
	c.Domain = "mesh"
	if err := r.set(c); err != nil {
		t.Fatal(err)
	}
	crashed := &resolverDir{dir: dir, marker: r.marker} // the next start's manager
	if err := crashed.revert(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "corp" {
		t.Errorf("after revert, %s holds %v; want only the other's file", dir, entries)
	}
}
