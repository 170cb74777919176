//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/wire-mesh/wire/api"
)

// buildWire builds wire from this repository into dir, as the release
// does (CGO_ENABLED=0, -trimpath); it returns the binary and the commit
// it was built from (git describe --always --dirty).
func buildWire(dir string) (bin, tree string, err error) {
	mod, err := output("go", "env", "GOMOD")
	if err != nil || mod == "" || mod == os.DevNull {
		return "", "", fmt.Errorf("cannot find the module root (go env GOMOD: %q, %v): run the benchmark inside the repository", mod, err)
	}
	root := filepath.Dir(mod)
	tree, _ = output("git", "-C", root, "describe", "--always", "--dirty")
	bin = filepath.Join(dir, "wire")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, tree, nil
}

// output runs a short command and returns its trimmed stdout.
func output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	return strings.TrimSpace(string(out)), err
}

// serverProc is a running `wire server`.
type serverProc struct {
	cmd  *exec.Cmd
	pid  int
	addr string // host:port of the HTTP API
	done chan struct{}
	err  error // how it exited, once done is closed
}

var bannerHTTP = regexp.MustCompile(`HTTP\s+https://(\S+)`)

// bannerWait bounds the server's start, the store's load included.
const bannerWait = 2 * time.Minute

// startServer runs `wire server` on cpu alone, with its state in
// stateDir (and store, if not the state dir's SQLite), its API on listen and STUN and the relay on loopback ports
// of its choosing, its log to logw; it returns once the banner says
// where it listens.
func startServer(bin, stateDir, store, listen string, cpu int, logw io.Writer) (*serverProc, error) {
	cmd := exec.Command(bin, "server", "--state-dir", stateDir, "--listen", listen,
		"--stun-listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0")
	if store != "" {
		cmd.Args = append(cmd.Args, "--store", store)
	}
	cmd.Stderr = logw
	// Killed if the benchmark dies: Pdeathsig follows the thread that
	// forks, which startPinned locks and which lives on after.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd.Stdout = pw
	err = startPinned(cmd, cpu)
	pw.Close()
	if err != nil {
		return nil, fmt.Errorf("starting wire server: %w", err)
	}
	p := &serverProc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	banner := make(chan string, 1)
	go func() {
		defer close(banner)
		s := bufio.NewScanner(pr)
		for s.Scan() {
			if m := bannerHTTP.FindStringSubmatch(s.Text()); m != nil {
				banner <- m[1]
				break
			}
		}
		io.Copy(io.Discard, pr) // until the server exits
	}()
	select {
	case addr, ok := <-banner:
		if ok {
			p.addr = addr
			return p, nil
		}
		<-p.done
		return nil, fmt.Errorf("wire server exited without its banner (%v); its log is in %s", p.err, stateDir)
	case <-time.After(bannerWait):
		p.kill()
		return nil, fmt.Errorf("wire server printed no banner in %v", bannerWait)
	}
}

// stop sends sig and waits up to wait for the server to exit, then kills
// it. It reports how the server exited.
func (p *serverProc) stop(sig syscall.Signal, wait time.Duration) error {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		if sig == syscall.SIGKILL {
			return nil
		}
		return p.err
	case <-time.After(wait):
		p.kill()
		return fmt.Errorf("wire server did not exit within %v of %v: killed", wait, sig)
	}
}

// kill ends the server, if it still runs, and waits for it.
func (p *serverProc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// createKey runs `wire server key create --reusable` against the state
// dir and returns the key on its last line.
func createKey(bin, stateDir, store string) (api.JoinKey, error) {
	args := []string{"server", "key", "create", "--state-dir", stateDir, "--reusable", "--ttl", "24h"}
	if store != "" {
		args = append(args, "--store", store)
	}
	out, err := output(bin, args...)
	if err != nil {
		return api.JoinKey{}, fmt.Errorf("wire server key create: %w", err)
	}
	lines := strings.Split(out, "\n")
	return api.ParseJoinKey(lines[len(lines)-1])
}

// logSummary counts the warnings and errors in the server's log and
// keeps the commonest messages.
type logSummary struct {
	warnings, errors int
	suppressed       int // records the rate limit left out, as counted in the log
	top              []string
}

var (
	logLevel      = regexp.MustCompile(`level=(WARN|ERROR)`)
	logMsg        = regexp.MustCompile(`msg="?((?:[^"\\]|\\.)*?)"?(?: \w+=|$)`)
	logSuppressed = regexp.MustCompile(`suppressed=(\d+)`)
	logAddr       = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)
)

func summarizeLog(path string) logSummary {
	var s logSummary
	f, err := os.Open(path)
	if err != nil {
		return s
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := logLevel.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] == "WARN" {
			s.warnings++
		} else {
			s.errors++
		}
		if sm := logSuppressed.FindStringSubmatch(line); sm != nil {
			var n int
			fmt.Sscan(sm[1], &n)
			s.suppressed += n
		}
		if mm := logMsg.FindStringSubmatch(line); mm != nil {
			counts[logAddr.ReplaceAllString(mm[1], "ADDR")]++
		}
	}
	s.top = topCounts(counts, 3)
	return s
}
