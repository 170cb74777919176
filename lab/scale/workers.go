//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// workerProc is a simulator process, as the coordinator sees it.
type workerProc struct {
	cmd     *exec.Cmd
	pid     int
	in      *os.File
	enc     *json.Encoder
	replies chan reply // closed when its stdout ends
	done    chan struct{}
}

// setupWait bounds a worker's start: making its nodes' identities.
const setupWait = 2 * time.Minute

// startWorker runs this program again as a worker for cfg's nodes. It
// inherits this process's CPU (the simulator's) and open-file limit.
func startWorker(cfg workerConfig) (*workerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-worker")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("starting a simulator process: %w", err)
	}
	w := &workerProc{cmd: cmd, pid: cmd.Process.Pid, in: inW, enc: json.NewEncoder(inW), replies: make(chan reply), done: make(chan struct{})}
	go func() {
		w.cmd.Wait()
		close(w.done)
	}()
	go w.read(outR)
	if err := w.enc.Encode(cfg); err != nil {
		w.close()
		return nil, err
	}
	if _, err := w.recv(context.Background(), setupWait); err != nil {
		w.close()
		return nil, fmt.Errorf("simulator process for nodes %d to %d: %w", cfg.Lo, cfg.Hi-1, err)
	}
	return w, nil
}

func (w *workerProc) read(out *os.File) {
	defer out.Close()
	defer close(w.replies)
	dec := json.NewDecoder(out)
	for {
		var r reply
		if err := dec.Decode(&r); err != nil {
			return
		}
		w.replies <- r
	}
}

func (w *workerProc) send(req request) error { return w.enc.Encode(req) }

// recv waits for the worker's next reply.
func (w *workerProc) recv(ctx context.Context, wait time.Duration) (reply, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r, ok := <-w.replies:
		switch {
		case !ok:
			return r, errors.New("the simulator process exited")
		case r.Err != "":
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-t.C:
		return reply{}, fmt.Errorf("no answer from the simulator process in %v", wait)
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// close ends the worker: its stdin closes, and if it has not exited a
// few seconds later, it is killed.
func (w *workerProc) close() {
	w.in.Close()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.done
	}
}

// callAll sends each worker its request and waits for every reply.
func callAll(ctx context.Context, ws []*workerProc, wait time.Duration, req func(i int) request) ([]reply, error) {
	for i, w := range ws {
		if err := w.send(req(i)); err != nil {
			return nil, fmt.Errorf("simulator process %d: %w", i, err)
		}
	}
	var errs []error
	reps := make([]reply, len(ws))
	for i, w := range ws {
		r, err := w.recv(ctx, wait)
		if err != nil {
			errs = append(errs, fmt.Errorf("simulator process %d: %w", i, err))
		}
		reps[i] = r
	}
	return reps, errors.Join(errs...)
}

// same is a request for callAll that is the same for every worker.
func same(r request) func(int) request { return func(int) request { return r } }
