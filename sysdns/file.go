package sysdns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wire-mesh/wire/internal/atomicfile"
)

// Saved is the file in the state dir holding the resolv.conf from before
// wire; SavedLink, if there, says it was a symlink to that target.
const (
	Saved     = "resolv.conf.pre-wire"
	SavedLink = "resolv.conf.pre-wire.link"
)

// resolvFile rewrites resolv.conf: wire's resolver as the only
// nameserver (it forwards everything outside the mesh to the ones from
// before), the mesh's domain first in the search list. It is the fallback
// of systems without a resolver daemon to ask for split DNS.
type resolvFile struct {
	path, saved, savedLink string
}

func newResolvFile(o Options) *resolvFile {
	return &resolvFile{path: o.ResolvConf, saved: filepath.Join(o.StateDir, Saved), savedLink: filepath.Join(o.StateDir, SavedLink)}
}

func (f *resolvFile) mode() string { return "resolv.conf" }

func (f *resolvFile) upstream() string {
	if _, err := os.Stat(f.saved); err == nil {
		return f.saved
	}
	return f.path
}

func (f *resolvFile) set(cfg Config) error {
	if err := f.save(); err != nil {
		return err
	}
	orig, err := os.ReadFile(f.saved)
	if err != nil {
		return err
	}
	return f.write(rewrite(orig, cfg, f.saved))
}

// save keeps the current resolv.conf, unless a copy is kept already (it
// is then the one from before wire: what is in place is wire's).
func (f *resolvFile) save() error {
	if _, err := os.Stat(f.saved); err == nil {
		return nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	if target, err := os.Readlink(f.path); err == nil {
		if err := atomicfile.Write(f.savedLink, []byte(target), 0o644); err != nil {
			return err
		}
	}
	return atomicfile.Write(f.saved, b, 0o644)
}

// write replaces resolv.conf's content. A symlink is replaced by a file;
// a file is written in place, as it may be a bind mount (containers,
// network namespaces), which a rename cannot replace.
func (f *resolvFile) write(b []byte) error {
	if fi, err := os.Lstat(f.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(f.path); err != nil {
			return err
		}
	}
	fd, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	_, err = fd.Write(b)
	if serr := fd.Sync(); err == nil {
		err = serr
	}
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f *resolvFile) revert() error {
	orig, err := os.ReadFile(f.saved)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing of wire's in place
	}
	if err != nil {
		return err
	}
	if target, err := os.ReadFile(f.savedLink); err == nil {
		os.Remove(f.path)
		if err := os.Symlink(string(target), f.path); err != nil {
			return fmt.Errorf("putting back the symlink %s -> %s: %w", f.path, target, err)
		}
	} else if err := f.write(orig); err != nil {
		return err
	}
	os.Remove(f.savedLink)
	return os.Remove(f.saved)
}

// rewrite is resolv.conf with wire's resolver: its nameserver alone, the
// mesh's domain first in the search list, the other lines as they were.
func rewrite(orig []byte, cfg Config, saved string) []byte {
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Written by wire. The system's own resolv.conf is kept in %s;\n", saved)
	fmt.Fprintf(&out, "# wire down puts it back. Names outside %s go to its nameservers through wire.\n", cfg.Domain)
	fmt.Fprintf(&out, "nameserver %s\n", cfg.Nameserver)
	search := []string{cfg.Domain}
	sc := bufio.NewScanner(bytes.NewReader(orig))
	var rest []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0, strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"), fields[0] == "nameserver":
		case fields[0] == "search" || fields[0] == "domain":
			for _, d := range fields[1:] {
				if !strings.EqualFold(d, cfg.Domain) {
					search = append(search, d)
				}
			}
		default:
			rest = append(rest, line)
		}
	}
	fmt.Fprintf(&out, "search %s\n", strings.Join(search, " "))
	for _, l := range rest {
		fmt.Fprintln(&out, l)
	}
	return out.Bytes()
}
