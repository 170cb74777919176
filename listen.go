package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/wire-mesh/wire/internal/cli"
)

// Listeners that are off by default and bound to loopback when given a
// bare port: what they serve is for this host's admin.

// uiFlag is wire server's --ui-listen.
func uiFlag() cli.Flag {
	return &cli.StringFlag{Name: "ui-listen", Usage: "serve the admin's dashboard at http://ADDR/ (login with admin.token): 127.0.0.1:8080, or a bare port for loopback's (default: off)"}
}

// metricsFlag is --metrics-listen, of wire server and wire up.
func metricsFlag() cli.Flag {
	return &cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics at http://ADDR/metrics, unauthenticated: 127.0.0.1:9090, or a bare port for loopback's; off: none (the default; wire up saves it)"}
}

// metricsAddr is --metrics-listen as an address to listen on.
func metricsAddr(c *cli.Context) (string, error) { return listenAddr(c, "metrics-listen") }

// listenAddr is the flag's value as an address to listen on: a bare port
// (9090, :9090) is loopback's; an address with a host is taken as the
// admin wrote it; "" and off are none.
func listenAddr(c *cli.Context, flag string) (string, error) {
	v := c.String(flag)
	if v == "" || v == "off" {
		return "", nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		v = ":" + strconv.Itoa(n)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("--%s %q: want HOST:PORT or a port", flag, v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("--%s %q: want a port from 0 to 65535", flag, v)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
