//go:build linux

package lab_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// tcpEcho echoes every line on each address until helperLife has passed.
func tcpEcho(addrs []string) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp4", a)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(helperLife))
					io.Copy(c, c)
				}()
			}
		}()
	}
	fmt.Println("ready")
	time.Sleep(helperLife)
	return nil
}

// tcpDial connects to ADDR and exchanges one line, within TIMEOUT each.
func tcpDial(args []string) error {
	if len(args) != 2 {
		return errors.New("tcp-dial: want ADDR TIMEOUT")
	}
	timeout, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp4", args[0], timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := exchange(c, bufio.NewReader(c), timeout); err != nil {
		return err
	}
	fmt.Println("ok")
	return nil
}

// tcpHold connects to ADDR and exchanges a line every 50 ms; it prints
// "connected", then "stalled" and exits when a line takes over 300 ms
// (a bound of a few round trips, for a filter that drops the flow).
func tcpHold(args []string) error {
	if len(args) != 1 {
		return errors.New("tcp-hold: want ADDR")
	}
	c, err := net.DialTimeout("tcp4", args[0], time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := exchange(c, r, time.Second); err != nil {
		return err
	}
	fmt.Println("connected")
	for end := time.Now().Add(helperLife); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := exchange(c, r, 300*time.Millisecond); err != nil {
			fmt.Println("stalled:", err)
			return nil
		}
	}
	return errors.New("tcp-hold: never stalled")
}

func exchange(c net.Conn, r *bufio.Reader, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err == nil && line != "ping\n" {
		err = fmt.Errorf("echo %q", line)
	}
	return err
}
