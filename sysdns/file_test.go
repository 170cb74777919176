package sysdns

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var cfg = Config{Interface: "wire0", Nameserver: netip.MustParseAddr("10.99.0.2"), Domain: "wire"}

const orig = "# from DHCP\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example wire\noptions edns0 timeout:2\n"

func files(t *testing.T) (*resolvFile, string) {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	path := filepath.Join(dir, "resolv.conf")
	return newResolvFile(Options{StateDir: state, ResolvConf: path}), path
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestResolvFile(t *testing.T) {
	f, path := files(t)
	os.WriteFile(path, []byte(orig), 0o644)
	for range 2 { // Set is idempotent: the second keeps the first's copy
		if err := f.set(cfg); err != nil {
			t.Fatal(err)
		}
	}
	got := read(t, path)
	for _, want := range []string{"\nnameserver 10.99.0.2\n", "\nsearch wire corp.example\n", "\noptions edns0 timeout:2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "192.0.2.53") {
		t.Errorf("the system's nameservers stay in resolv.conf (they are asked through wire):\n%s", got)
	}
	if f.upstream() != f.saved || !strings.Contains(read(t, f.upstream()), "nameserver 192.0.2.53") {
		t.Errorf("upstream %s does not name the system's nameservers", f.upstream())
	}
	// A crash, and a new manager on the same state dir puts it back.
	again := newResolvFile(Options{StateDir: filepath.Dir(f.saved), ResolvConf: path})
	if err := again.revert(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != orig {
		t.Errorf("after revert:\n%s\nwant exactly:\n%s", got, orig)
	}
	if _, err := os.Stat(f.saved); !os.IsNotExist(err) {
		t.Errorf("the kept copy stays after revert: %v", err)
	}
	if err := again.revert(); err != nil {
		t.Errorf("a second revert: %v", err)
	}
}

func TestResolvFileSymlink(t *testing.T) {
	f, path := files(t)
	target := filepath.Join(filepath.Dir(path), "managed-by-someone")
	os.WriteFile(target, []byte(orig), 0o644)
	os.Symlink(target, path)
	if err := f.set(cfg); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(path); fi.Mode()&os.ModeSymlink != 0 {
		t.Error("resolv.conf is still the symlink")
	}
	if read(t, target) != orig {
		t.Error("the symlink's target was changed")
	}
	if err := f.revert(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(path); err != nil || got != target {
		t.Errorf("after revert resolv.conf is %q (%v), want the symlink to %s back", got, err, target)
	}
}

func TestRevertWithNothingDone(t *testing.T) {
	f, path := files(t)
	os.WriteFile(path, []byte(orig), 0o644)
	if err := f.revert(); err != nil || read(t, path) != orig {
		t.Errorf("revert with nothing of wire's in place: %v, %q", err, read(t, path))
	}
}
