package sysdns

import "path/filepath"

// newPlatform uses macOS's per-domain resolvers: a file in /etc/resolver
// named after the domain sends its queries to wire, and nothing else.
func newPlatform(o Options) platform {
	if o.ResolverDir == "" {
		return none{}
	}
	return &resolverDir{dir: o.ResolverDir, marker: filepath.Join(o.StateDir, "resolver.domain")}
}
