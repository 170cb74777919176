package wg

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
)

// ifconfig configures a utun interface the way macOS offers: with the
// ifconfig and route commands.
type ifconfig struct {
	name string
}

var _ netif = ifconfig{}

// setAddress removes have and adds want; a utun interface is
// point-to-point, so want's subnet gets a route of its own.
func (i ifconfig) setAddress(have, want netip.Prefix) error {
	if have.IsValid() && have != want {
		fam := family(have)
		// The route may be gone already; the address is what must go.
		run("route", "-q", "-n", "delete", "-"+fam, have.Masked().String(), "-interface", i.name)
		if err := run("ifconfig", i.name, fam, have.Addr().String(), "-alias"); err != nil {
			return err
		}
	}
	if !want.IsValid() {
		return nil
	}
	fam := family(want)
	if err := run("ifconfig", i.name, fam, want.String(), want.Addr().String(), "alias"); err != nil {
		return err
	}
	return run("route", "-q", "-n", "add", "-"+fam, want.Masked().String(), "-interface", i.name)
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "inet"
	}
	return "inet6"
}

func (i ifconfig) up() error { return run("ifconfig", i.name, "up") }

// remove does nothing: a utun interface goes away, with its addresses and
// routes, when wireguard-go closes it.
func (ifconfig) remove() error { return nil }

// run runs a command and returns its output in the error if it fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wg: %s %v: %w: %s", name, args, err, bytes.TrimSpace(out))
	}
	return nil
}
