//go:build !linux && !darwin

package node

func platformChecks() []Check {
	return []Check{{Name: "engine", Finding: "wire's node runs on Linux and macOS only", Fix: "run wire up on Linux or macOS"}}
}
