package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wire-mesh/wire/service"
)

// ServiceName is the systemd unit of the node daemon; its launchd label
// is com.wire-mesh.wire.
const ServiceName = serviceName + ".service"

const serviceName = "wire"

// Service is the node daemon as the service manager runs it: `wire up
// --foreground` on the state dir dir. It restarts only after a failure,
// since `wire down` makes it exit 0 and it must stay down. It has no
// sandbox: it creates the interface, routes and kernel WireGuard peers.
// Under launchd its output goes to the log LastLogLine reads.
func Service(bin, dir string) service.Spec {
	return service.Spec{
		Name:         serviceName,
		Description:  "wire mesh VPN node (" + dir + ")",
		Args:         []string{bin, "up", "--foreground", "--state-dir", dir},
		StateDir:     dir,
		Restart:      service.OnFailure,
		RestartDelay: 2 * time.Second,
		LogPath:      filepath.Join(dir, LogFile),
	}
}

// InstallService writes, enables and (re)starts the node's service.
func InstallService(ctx context.Context, bin, dir string) error {
	dir, err := filepath.Abs(dir) // the service manager does not run it from here
	if err != nil {
		return err
	}
	return service.Install(ctx, Service(bin, dir))
}

// StopService stops the node's service if it runs; it reports whether it
// did.
func StopService(ctx context.Context) bool {
	return service.Stop(ctx, serviceName)
}

// Detach starts `wire up --foreground` in the background, in its own
// session, logging to the state dir.
func Detach(bin string, args []string, dir string) (*os.Process, error) {
	log, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd.Process, nil
}

// WaitUp waits until the daemon answers with its status, or exits (exited
// says how, when it was started detached).
func WaitUp(ctx context.Context, dir string, exited <-chan string) (Status, error) {
	c := NewClient(dir)
	for {
		st, err := c.Status(ctx)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return Status{}, fmt.Errorf("the daemon did not come up in time; it last said: %s", lastWords(dir))
		case how := <-exited:
			return Status{}, fmt.Errorf("the daemon exited (%s): %s", how, lastWords(dir))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lastWords is what the daemon last logged, its fatal error if it failed:
// in the journal under systemd, else in its log file.
func lastWords(dir string) string {
	line := ""
	if service.Available() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		line = service.LastLog(ctx, Service("", dir))
	}
	if line == "" {
		line = LastLogLine(dir)
	}
	if line == "" {
		return "nothing (see " + filepath.Join(dir, LogFile) + ")"
	}
	return strings.TrimPrefix(line, "wire: ") // one "wire: " is the CLI's
}

// LastLogLine is the daemon log's last line, which holds its fatal error.
func LastLogLine(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, LogFile))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// serviceRuns says whether the service whose unit (or plist) is at path
// runs the daemon of the state dir dir: a wire down for another state dir
// (another node on this host, a test's) must not stop it.
func serviceRuns(path, dir string) bool {
	abs, err := filepath.Abs(dir)
	return err == nil && service.Runs(path, "--state-dir", abs)
}

// Down takes the node down: it stops the service if that runs the daemon
// (a root caller only), else asks the daemon through its control socket;
// the daemon then exits 0, which leaves a service stopped too. It returns
// what to tell the user. The CLI and MCP both use it.
func Down(ctx context.Context, c *Client) (string, error) {
	dir := filepath.Dir(c.path)
	if os.Geteuid() == 0 && serviceRuns(service.Spec{Name: serviceName}.Path(), dir) && StopService(ctx) {
		return "wire is down (service stopped)", nil
	}
	if err := c.Down(ctx); err != nil {
		return "", err
	}
	// The daemon answers before it goes, and closes its socket last, once
	// the interface is gone: wait for that, so that wire down means down.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if _, err := c.Status(ctx); errors.Is(err, ErrNotRunning) {
			return "wire is down", nil
		}
		select {
		case <-ctx.Done():
			return "", errors.New("the daemon said it would stop, but still answers after 15s: " + LastLogLine(filepath.Dir(c.path)))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
