package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/wire-mesh/wire/relay"
)

// relayState is the daemon's connection to the server's relay.
type relayState struct {
	up          bool // the relay answered the last HELLO
	unsupported bool // the engine cannot relay
}

// Relay keepalive: a HELLO every relayEvery, each given relayTimeout; two
// failures in a row and the daemon asks for a fresh token and reconnects
// (the server may have restarted and forgotten the old one).
const (
	relayEvery   = 5 * time.Second
	relayTimeout = 3 * time.Second
)

// keepRelay keeps a connection to the relay while the daemon runs.
func (d *Daemon) keepRelay(ctx context.Context) {
	retry := backoff{first: time.Second, cap: 10 * time.Second}
	for ctx.Err() == nil {
		server := d.client.URL() // the relay is this server's
		conn, err := d.dialRelay(ctx)
		if errors.Is(err, errors.ErrUnsupported) {
			d.log.Info("no relay with this engine", "err", err)
			d.setRelay(false, true)
			return
		}
		if err != nil {
			d.setRelay(false, false)
			d.log.Debug("relay unavailable", "err", err, "waited", retry.wait(ctx))
			continue
		}
		retry.reset()
		d.setRelay(true, false)
		d.holdRelay(ctx, conn, server)
		d.engine.SetRelay(nil)
		conn.Close()
	}
}

// dialRelay gets a token and says HELLO from a fresh socket.
func (d *Daemon) dialRelay(ctx context.Context) (*relay.Conn, error) {
	rctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	creds, err := d.client.Relay(rctx)
	if err != nil {
		return nil, err
	}
	server, err := d.stunServer(rctx)
	if err != nil {
		return nil, err
	}
	vpn, err := netip.ParseAddr(d.cfg.VPNIP)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return nil, err
	}
	conn, err := relay.NewConn(pc, relay.Config{Relay: netip.AddrPortFrom(server.Addr(), uint16(creds.Port)), VPNIP: vpn, Token: creds.Token, Logger: d.log})
	if err != nil {
		pc.Close()
		return nil, err
	}
	if err := d.engine.SetRelay(conn); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(rctx); err != nil {
		d.engine.SetRelay(nil)
		conn.Close()
		return nil, fmt.Errorf("relay HELLO: %w", err)
	}
	return conn, nil
}

// holdRelay sends keepalive HELLOs until two fail in a row, the daemon
// moves to another of the mesh's servers (server is the one whose relay
// conn is), or ctx ends. The relay follows the server in use: the node's
// control channel moves at once when its server dies, and its relayed
// peers should not wait for two keepalives to fail.
func (d *Daemon) holdRelay(ctx context.Context, conn *relay.Conn, server string) {
	fails := 0
	for fails < 2 {
		for wait := relayEvery; wait > 0 && ctx.Err() == nil; wait -= relayCheck {
			if d.client.URL() != server {
				d.log.Info("relay moves with the server", "from", server, "to", d.client.URL())
				return
			}
			sleep(ctx, min(wait, relayCheck))
		}
		if ctx.Err() != nil {
			return
		}
		hctx, cancel := context.WithTimeout(ctx, relayTimeout)
		err := conn.Hello(hctx)
		cancel()
		if err != nil {
			fails++
			d.setRelay(false, false)
			continue
		}
		fails = 0
		d.setRelay(true, false)
	}
}

// relayCheck is how often holdRelay looks whether the server in use moved.
const relayCheck = 250 * time.Millisecond

// setRelay records the relay's state, and re-applies the peers if it
// changed: relayed peers need it up.
func (d *Daemon) setRelay(up, unsupported bool) {
	d.mu.Lock()
	changed := d.relay.up != up
	d.relay = relayState{up: up, unsupported: unsupported}
	d.mu.Unlock()
	if changed {
		d.log.Info("relay", "up", up)
		d.changed()
	}
}
