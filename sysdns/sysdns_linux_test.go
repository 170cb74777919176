package sysdns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeResolvectl puts a resolvectl first on PATH that logs its arguments,
// one call a line, and fails for the operation named fail.
func fakeResolvectl(t *testing.T, fail string) (log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$*\" >>" + log + "\n[ \"$1\" != " + shq(fail) + " ] || { echo \"Unknown operation $1\" >&2; exit 1; }\n"
	if err := os.WriteFile(filepath.Join(dir, "resolvectl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestResolved checks the split: wire's link is no default route, so
// that resolved sends it the mesh's domain alone, and it gets its server
// last, when nothing else can route other names to it.
func TestResolved(t *testing.T) {
	log := fakeResolvectl(t, "")
	r := &resolved{marker: filepath.Join(t.TempDir(), "resolved.iface")}
	lo := Config{Interface: "lo", Nameserver: cfg.Nameserver, Domain: "wire"} // an interface that exists, for revert
	if err := r.set(lo); err != nil {
		t.Fatal(err)
	}
	if err := r.revert(); err != nil {
		t.Fatal(err)
	}
	want := []string{"default-route lo false", "domain lo wire", "llmnr lo no", "mdns lo no", "dns lo 10.99.0.2", "revert lo"}
	if diff := cmp.Diff(want, calls(t, log)); diff != "" {
		t.Errorf("resolvectl calls (-want +got):\n%s", diff)
	}
}

// TestResolvedNoDefaultRoute: a resolvectl that cannot take wire's link
// off the default route gets no server for it (every name would go to
// wire), and the error says why.
func TestResolvedNoDefaultRoute(t *testing.T) {
	log := fakeResolvectl(t, "default-route")
	r := &resolved{marker: filepath.Join(t.TempDir(), "resolved.iface")}
	err := r.set(cfg)
	if err == nil || !strings.Contains(err.Error(), "Unknown operation default-route") {
		t.Errorf("set: %v, want resolvectl's error", err)
	}
	if diff := cmp.Diff([]string{"default-route wire0 false"}, calls(t, log)); diff != "" {
		t.Errorf("resolvectl calls (-want +got):\n%s", diff)
	}
}
