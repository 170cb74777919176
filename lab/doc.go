// Package lab builds small simulated internets out of Linux network
// namespaces, for tests and benchmarks of wire that run the real binary:
// public hosts on one bridge (203.0.113.0/24), home routers that NAT with
// nftables as real ones do, nodes on the routers' LANs, and the processes
// that run inside them. It needs root, iproute2, nftables and ping (Linux
// only).
//
// Every namespace of a lab is named with a prefix of its own, and the lab
// removes its namespaces and kills the processes it started when the test
// ends. No namespace of a lab is connected to the host's network.
package lab
