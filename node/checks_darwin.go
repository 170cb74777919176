package node

func platformChecks() []Check {
	return []Check{{Name: "engine", OK: true, Finding: "macOS: wire uses its embedded userspace WireGuard on a utun device"}}
}
