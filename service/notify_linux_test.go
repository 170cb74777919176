package service

import (
	"fmt"
	"os"
	"testing"
)

// systemd may give an abstract socket: @ then a name outside the file system.
func TestNotifyAbstract(t *testing.T) {
	testNotify(t, fmt.Sprintf("@wire-notify-test-%d", os.Getpid()))
}
