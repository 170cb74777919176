package service

import (
	"fmt"
	"net"
	"os"
)

// Notify tells the service manager that started this process about its
// state ("READY=1" once it serves), as sd_notify(3) does: one datagram to
// the unix socket in $NOTIFY_SOCKET. Without that variable it does
// nothing: the program does not run under a Type=notify unit.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// A leading @ means Linux's abstract namespace, for systemd and for
	// Go's net package alike.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	return nil
}
