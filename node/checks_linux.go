package node

import "os"

func platformChecks() []Check {
	kernel := Check{Name: "kernel wireguard", OK: true, Finding: "module loaded: wire uses kernel WireGuard"}
	if _, err := os.Stat("/sys/module/wireguard"); err != nil {
		kernel.Finding = "module not loaded: wire uses its embedded userspace WireGuard (nothing to do; `modprobe wireguard` switches to the kernel)"
	}
	tun := Check{Name: "tun", OK: true, Finding: "/dev/net/tun is present"}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		if os.IsNotExist(err) || os.Geteuid() == 0 {
			tun = Check{Name: "tun", Finding: "/dev/net/tun: " + err.Error(), Fix: "modprobe tun (in a container: pass --device /dev/net/tun)"}
		}
	} else {
		f.Close()
	}
	return []Check{kernel, tun}
}
