package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wire-mesh/wire/service"
)

// Check is one finding of `wire install`: what was checked, what was
// found, and what to do about it.
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Finding string `json:"finding"`
	Fix     string `json:"fix,omitempty"`
}

// Checks looks at the platform and at this node's state in dir.
func Checks(ctx context.Context, dir string) []Check {
	checks := platformChecks()
	checks = append(checks, privilegeCheck())
	cfg, err := LoadConfig(dir)
	if err != nil {
		fix := "sudo wire up --server https://SERVER:8787 --join KEY"
		if !errors.Is(err, ErrNoConfig) {
			fix = "move " + filepath.Join(dir, ConfigFile) + " away, then " + fix
		}
		return append(checks, Check{Name: "config", Finding: err.Error(), Fix: fix})
	}
	checks = append(checks, Check{Name: "config", OK: true, Finding: fmt.Sprintf("joined as %s (%s) via %s", cfg.NodeName, cfg.VPNIP, cfg.ServerURL)})
	checks = append(checks, serverCheck(ctx, cfg, dir), daemonCheck(ctx, dir), serviceCheck())
	return checks
}

func privilegeCheck() Check {
	if os.Geteuid() == 0 {
		return Check{Name: "privileges", OK: true, Finding: "running as root"}
	}
	return Check{Name: "privileges", OK: false, Finding: "not root: wire up cannot create the interface", Fix: "run wire up with sudo"}
}

func serverCheck(ctx context.Context, cfg Config, dir string) Check {
	keys, err := LoadKeys(dir)
	if err != nil {
		return Check{Name: "server", Finding: err.Error()}
	}
	client, err := cfg.client(keys)
	if err != nil {
		return Check{Name: "server", Finding: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	h, err := client.Health(ctx)
	if err != nil {
		return Check{Name: "server", Finding: err.Error(), Fix: "check that wire server runs there and that TCP " + cfg.ServerURL + " is reachable from here"}
	}
	if _, err := client.Status(ctx); isExpired(err) {
		return Check{Name: "server", Finding: fmt.Sprintf("%s answers, but this node's enrolment expired: %v", cfg.ServerURL, err),
			Fix: "sudo wire up --join KEY (a key from wire server key create)"}
	} else if isRemoved(err) {
		return Check{Name: "server", Finding: fmt.Sprintf("%s answers, but does not know this node: it was removed from the mesh", cfg.ServerURL),
			Fix: "sudo wire down, then sudo wire up --server " + cfg.ServerURL + " --join KEY (a new key from wire server key create)"}
	}
	return Check{Name: "server", OK: true, Finding: fmt.Sprintf("%s answers and knows this node (version %s, %d nodes online)", cfg.ServerURL, h.Version, h.Online)}
}

func daemonCheck(ctx context.Context, dir string) Check {
	st, err := NewClient(dir).Status(ctx)
	if err != nil {
		return Check{Name: "daemon", Finding: "not running", Fix: "sudo wire up"}
	}
	return Check{Name: "daemon", OK: true, Finding: fmt.Sprintf("running: %s on %s (%s engine)", st.VPNIP, st.Interface, st.Engine)}
}

func serviceCheck() Check {
	if !service.Available() {
		return Check{Name: "service", OK: true, Finding: "no service manager here: wire up runs the daemon in the background"}
	}
	path := service.Spec{Name: serviceName}.Path()
	if _, err := os.Stat(path); err != nil {
		return Check{Name: "service", Finding: path + " is not installed", Fix: "sudo wire up (installs and starts it)"}
	}
	return Check{Name: "service", OK: true, Finding: path + " is installed"}
}
