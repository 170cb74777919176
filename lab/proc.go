//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a long-running process in a namespace, its stdout and stderr
// going to a log file.
type Proc struct {
	Name string // as given to Start
	Log  string // the log file's path
	NS   *NS

	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it ended, once done is closed
}

// ErrRunning is what Wait returns for a process still running at its
// deadline.
var ErrRunning = errors.New("still running")

// tailLines is how much of each log a failed test prints.
const tailLines = 40

// stopGrace is how long a process has to end on SIGTERM at cleanup, so
// that daemons can remove their interfaces and sockets.
const stopGrace = 3 * time.Second

// Start runs args inside the namespace (ip netns exec), its output going
// to a log file named after name. When the test ends the process is
// stopped by its pid (SIGTERM, then SIGKILL after stopGrace), and if the
// test failed the tail of its log is printed. The process also dies with the test binary (SIGKILL on the
// parent's death). Start fails the test if the command cannot start.
func Start(t T, ns *NS, name string, args ...string) *Proc {
	t.Helper()
	log, err := ns.lab.createLog(name)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	// ip netns exec execs the command itself: the pid is the command's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("lab: in %s: starting %s: %v", ns, strings.Join(args, " "), err)
	}
	p := &Proc{Name: name, Log: log.Name(), NS: ns, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(stopGrace)
		if t.Failed() {
			t.Logf("--- %s in %s (pid %d, %s), last lines of %s:\n%s", p.Name, ns, p.Pid(), p.state(), p.Log, p.Tail(tailLines))
		}
	})
	return p
}

// createLog makes a fresh log file for a process name.
func (l *Lab) createLog(name string) (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	base := strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, name)
	for i := 1; i <= 1000; i++ {
		file := base + ".log"
		if i > 1 {
			file = fmt.Sprintf("%s.%d.log", base, i)
		}
		f, err := os.OpenFile(filepath.Join(l.logs, file), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("too many logs named %s", name)
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited says whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits at most timeout for the process to end and returns how it
// ended (nil for exit status 0), or ErrRunning.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s: %w after %v", p.Name, ErrRunning, timeout)
	}
}

// Kill ends the process with SIGKILL and waits for it (at most ten
// seconds). It does nothing to a process that has ended.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Stop sends SIGTERM, waits at most timeout for the process to end, then
// kills it. It returns how the process ended.
func (p *Proc) Stop(timeout time.Duration) error {
	if !p.Exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	err := p.Wait(timeout)
	if errors.Is(err, ErrRunning) {
		p.Kill()
	}
	return err
}

// state says whether the process runs, or how it ended.
func (p *Proc) state() string {
	if !p.Exited() {
		return "running"
	}
	if p.err == nil {
		return "exited 0"
	}
	return p.err.Error()
}

// Output is all the process has written so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(b)
}

// Tail is the last n lines the process has written.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitLine waits at most timeout for the process to write a line that
// contains substr, and returns that line. It fails early if the process
// ends first.
func (p *Proc) WaitLine(substr string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		exited := p.Exited() // before reading, so that a last line is seen
		for _, line := range strings.Split(p.Output(), "\n") {
			if strings.Contains(line, substr) {
				return line, nil
			}
		}
		if exited {
			return "", fmt.Errorf("%s ended (%s) before writing %q", p.Name, p.state(), substr)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s wrote no line with %q within %v", p.Name, substr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
