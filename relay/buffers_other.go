//go:build !linux

package relay

import "net"

// setBuffers enlarges the socket's buffers as far as the system allows.
func setBuffers(c *net.UDPConn) {
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
}
