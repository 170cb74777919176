package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// ServiceName is the systemd unit of the node daemon.
const ServiceName = "wire.service"

var unitTemplate = template.Must(template.New("unit").Parse(`[Unit]
Description=wire mesh VPN node ({{.Dir}})
Documentation=https://github.com/wire-mesh/wire
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={{.Bin}} up --foreground --state-dir {{.Dir}}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
`))

// Unit is the text of the node's systemd unit. `wire down` makes the
// daemon exit 0, which Restart=on-failure leaves stopped.
func Unit(bin, dir string) string {
	var b bytes.Buffer
	unitTemplate.Execute(&b, struct{ Bin, Dir string }{bin, dir})
	return b.String()
}

// HasSystemd says whether systemd manages this machine.
func HasSystemd() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// InstallService writes, enables and (re)starts the unit.
func InstallService(ctx context.Context, bin, dir string) error {
	path := filepath.Join("/etc/systemd/system", ServiceName)
	if err := writeFileAtomic(path, []byte(Unit(bin, dir)), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", ServiceName}, {"restart", ServiceName}} {
		if out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// StopService stops the unit if it is active; it reports whether it was.
func StopService(ctx context.Context) bool {
	if !HasSystemd() || exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", ServiceName).Run() != nil {
		return false
	}
	return exec.CommandContext(ctx, "systemctl", "stop", ServiceName).Run() == nil
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

// WaitUp waits until the daemon answers with its status, or exits.
func WaitUp(ctx context.Context, dir string, exited <-chan error) (Status, error) {
	c := NewClient(dir)
	for {
		st, err := c.Status(ctx)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return Status{}, errors.New("the daemon did not come up in time: " + LastLogLine(dir))
		case err := <-exited:
			return Status{}, fmt.Errorf("the daemon exited (%v): %s", err, LastLogLine(dir))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LastLogLine is the daemon log's last line, which holds its fatal error.
func LastLogLine(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, LogFile))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Down takes the node down: it stops the systemd service if that runs the
// daemon (a root caller only), else asks the daemon through its control
// socket. It returns what to tell the user. The CLI and MCP both use it.
func Down(ctx context.Context, c *Client) (string, error) {
	if os.Geteuid() == 0 && StopService(ctx) {
		return "wire is down (service stopped)", nil
	}
	if err := c.Down(ctx); err != nil {
		return "", err
	}
	return "wire is down", nil
}
