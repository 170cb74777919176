package sysdns

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// resolverDir is macOS's way: a file in /etc/resolver named after the
// domain sends its queries to wire, and nothing else. It is plain files,
// so it is built and tested everywhere; only macOS reads them.
type resolverDir struct{ dir, marker string }

const resolverHeader = "# Written by wire; wire down removes it.\n"

func (r *resolverDir) mode() string     { return "/etc/resolver" }
func (r *resolverDir) upstream() string { return "/etc/resolv.conf" }

func (r *resolverDir) set(cfg Config) error {
	if err := r.revert(); err != nil { // a domain that changed
		return err
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(r.dir, cfg.Domain)
	if b, err := os.ReadFile(path); err == nil && !bytes.HasPrefix(b, []byte(resolverHeader)) {
		return fmt.Errorf("%s exists and is not wire's: remove it, or run wire up --accept-dns=false", path)
	}
	if err := os.WriteFile(r.marker, []byte(cfg.Domain), 0o644); err != nil {
		return err
	}
	return os.WriteFile(path, fmt.Appendf(nil, "%snameserver %s\n", resolverHeader, cfg.Nameserver), 0o644)
}

func (r *resolverDir) revert() error {
	domain, err := os.ReadFile(r.marker)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	path := filepath.Join(r.dir, string(domain))
	if b, err := os.ReadFile(path); err == nil && bytes.HasPrefix(b, []byte(resolverHeader)) {
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	return os.Remove(r.marker)
}
