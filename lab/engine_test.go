//go:build linux

package lab_test

import (
	"os"
	"testing"

	"github.com/wire-mesh/wire/lab"
)

// kernelWireGuard says whether this machine's kernel has WireGuard: in
// the VM it does; the build machines' own kernel does not.
func kernelWireGuard() bool {
	_, err := os.Stat("/sys/module/wireguard")
	return err == nil
}

// TestEngineAuto: with no --engine, a node runs kernel WireGuard where the
// kernel has it (the VM) and the embedded userspace engine where it does
// not (this machine).
func TestEngineAuto(t *testing.T) {
	m := newMesh(t)
	n := m.joinEngine(m.lab.Host("n1", "203.0.113.41"), "n1")
	st := m.waitUp(n)
	want := "userspace"
	if kernelWireGuard() {
		want = "kernel"
	}
	full, err := n.status()
	if err != nil {
		t.Fatal(err)
	}
	if full.Engine != want {
		t.Errorf("--engine auto chose %q (status %+v), want %q", full.Engine, st, want)
	}
}

// TestMixedEngines: kernel and userspace nodes in one mesh, behind NATs
// and not, all reach each other directly. Only where the kernel has
// WireGuard: the VM lab (lab/vmlab) runs it.
func TestMixedEngines(t *testing.T) {
	if !kernelWireGuard() {
		t.Skip("this kernel has no WireGuard: lab/vmlab runs this in its VM")
	}
	m := newMesh(t)
	l := m.lab
	r1 := l.Router("r1", "203.0.113.11", "192.168.1.0/24", lab.NATCone)
	r2 := l.Router("r2", "203.0.113.12", "192.168.2.0/24", lab.NATCone)
	k1 := m.joinEngine(l.NodeBehind(r1, "k1", "192.168.1.10"), "k1", "--engine", "kernel")
	u2 := m.joinEngine(l.NodeBehind(r2, "u2", "192.168.2.10"), "u2", "--engine", "userspace")
	k3 := m.joinEngine(l.Host("k3", "203.0.113.30"), "k3", "--engine", "kernel")
	u4 := m.joinEngine(l.Host("u4", "203.0.113.40"), "u4", "--engine", "userspace")
	nodes := []*node{k1, u2, k3, u4}
	for _, n := range nodes {
		m.waitUp(n)
	}
	t.Logf("every pair pings %v after the last node is up", m.waitPairs(meshTimeout, nodes...))
	for _, n := range nodes {
		st, err := n.status()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[byte]string{'k': "kernel", 'u': "userspace"}[n.name[0]]; st.Engine != want {
			t.Errorf("%s runs the %s engine, want %s", n.name, st.Engine, want)
		}
		for _, p := range st.Peers {
			if p.Path != "direct" {
				t.Errorf("%s reaches %s by %s, want direct", n.name, p.NodeName, p.Path)
			}
		}
	}
}
