package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/urfave/cli/v2"
)

// metricsFlag is --metrics-listen, of wire server and wire up.
func metricsFlag() cli.Flag {
	return &cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics at http://ADDR/metrics, unauthenticated: 127.0.0.1:9090, or a bare port for loopback's; off: none (the default; wire up saves it)"}
}

// metricsAddr is --metrics-listen as an address to listen on: a bare port
// (9090, :9090) is loopback's, for metrics have no authentication; an
// address with a host is taken as the admin wrote it.
func metricsAddr(c *cli.Context) (string, error) {
	v := c.String("metrics-listen")
	if v == "" || v == "off" {
		return "", nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		v = ":" + strconv.Itoa(n)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("--metrics-listen %q: want HOST:PORT or a port", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("--metrics-listen %q: want a port from 0 to 65535", v)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
