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
	tcp         bool // over TCP: UDP to the server goes unanswered here
	unsupported bool // the engine cannot relay
}

// Relay keepalive: a HELLO every relayEvery, each given relayTimeout; two
// failures in a row and the daemon asks for a fresh token and reconnects
// (the server may have restarted and forgotten the old one).
//
// The relay is reached over UDP when it answers there. When it does not
// but the server answers over HTTPS (a network that blocks UDP, as many
// corporate and hotel networks do), the daemon reaches it over TCP
// instead: a stream on an HTTPS connection (api.PathRelayStream), slower
// but a path. Meanwhile it tries UDP again every udpRetry, and moves back
// at the first answer.
const (
	relayEvery   = 5 * time.Second
	relayTimeout = 3 * time.Second
)

var udpRetry = 15 * time.Second // a variable for tests

// keepRelay keeps a connection to the relay while the daemon runs.
func (d *Daemon) keepRelay(ctx context.Context) {
	retry := backoff{first: time.Second, cap: 10 * time.Second}
	for ctx.Err() == nil {
		server := d.client.URL() // the relay is this server's
		conn, tcp, err := d.dialRelay(ctx)
		if errors.Is(err, errors.ErrUnsupported) {
			d.log.Info("no relay with this engine", "err", err)
			d.setRelay(relayState{unsupported: true})
			return
		}
		if err != nil {
			d.setRelay(relayState{})
			d.log.Debug("relay unavailable", "err", err, "waited", retry.wait(ctx))
			continue
		}
		retry.reset()
		d.setRelay(relayState{up: true, tcp: tcp})
		conn = d.holdRelay(ctx, conn, server, tcp)
		d.engine.SetRelay(nil)
		conn.Close()
	}
}

// dialRelay gets a token and says HELLO from a fresh UDP socket, or else
// over TCP; it hands the connection that answered to the engine, and says
// whether it is the TCP one.
func (d *Daemon) dialRelay(ctx context.Context) (*relay.Conn, bool, error) {
	cfg, err := d.relayConfig(ctx)
	if err != nil {
		return nil, false, err
	}
	conn, udpErr := d.udpRelay(ctx, cfg)
	if udpErr == nil || errors.Is(udpErr, errors.ErrUnsupported) {
		return conn, false, udpErr
	}
	conn, err = d.tcpRelay(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("over UDP: %v; over TCP: %w", udpErr, err)
	}
	d.log.Info("the relay answers over TCP only: UDP to the server seems blocked here", "udp", udpErr)
	return conn, true, nil
}

// relayConfig is how this node reaches the relay of the server in use,
// with a fresh token.
func (d *Daemon) relayConfig(ctx context.Context) (relay.Config, error) {
	rctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	creds, err := d.client.Relay(rctx)
	if err != nil {
		return relay.Config{}, err
	}
	server, err := d.stunServer(rctx)
	if err != nil {
		return relay.Config{}, err
	}
	vpn, err := netip.ParseAddr(d.cfg.VPNIP)
	if err != nil {
		return relay.Config{}, err
	}
	return relay.Config{Relay: netip.AddrPortFrom(server.Addr(), uint16(creds.Port)), VPNIP: vpn, Token: creds.Token, Logger: d.log}, nil
}

// udpRelay says HELLO to the relay from a fresh UDP socket, and once the
// relay answered hands the connection to the engine (until then, the
// engine's relay is what it was).
func (d *Daemon) udpRelay(ctx context.Context, cfg relay.Config) (*relay.Conn, error) {
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return nil, err
	}
	conn, err := relay.NewConn(pc, cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	if err := conn.Probe(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay HELLO: %w", err)
	}
	if err := d.engine.SetRelay(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// tcpRelay opens the relay over TCP, hands it to the engine, and says
// HELLO over it.
func (d *Daemon) tcpRelay(ctx context.Context, cfg relay.Config) (*relay.Conn, error) {
	rctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	rw, err := d.client.RelayStream(rctx)
	if err != nil {
		return nil, err
	}
	conn, err := relay.NewConn(relay.NewStream(rw, cfg.Relay), cfg)
	if err != nil {
		rw.Close()
		return nil, err
	}
	if err := d.engine.SetRelay(conn); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(rctx); err != nil {
		d.engine.SetRelay(nil)
		conn.Close()
		return nil, fmt.Errorf("relay HELLO over TCP: %w", err)
	}
	return conn, nil
}

// holdRelay sends keepalive HELLOs until two fail in a row, the daemon
// moves to another of the mesh's servers (server is the one whose relay
// conn is), or ctx ends. The relay follows the server in use: the node's
// control channel moves at once when its server dies, and its relayed
// peers should not wait for two keepalives to fail. Over TCP it tries UDP
// every udpRetry, and moves there at the first answer. It returns the
// connection it held last, still the engine's.
func (d *Daemon) holdRelay(ctx context.Context, conn *relay.Conn, server string, tcp bool) *relay.Conn {
	fails := 0
	tried := time.Now()
	for fails < 2 {
		for wait := relayEvery; wait > 0 && ctx.Err() == nil; wait -= relayCheck {
			if d.client.URL() != server {
				d.log.Info("relay moves with the server", "from", server, "to", d.client.URL())
				return conn
			}
			sleep(ctx, min(wait, relayCheck))
		}
		if ctx.Err() != nil {
			return conn
		}
		if tcp && time.Since(tried) >= udpRetry {
			tried = time.Now()
			if udp := d.retryUDP(ctx); udp != nil {
				conn.Close()
				conn, tcp, fails = udp, false, 0
				d.setRelay(relayState{up: true})
				continue
			}
		}
		hctx, cancel := context.WithTimeout(ctx, relayTimeout)
		err := conn.Hello(hctx)
		cancel()
		if err != nil {
			fails++
			d.setRelay(relayState{tcp: tcp})
			continue
		}
		fails = 0
		d.setRelay(relayState{up: true, tcp: tcp})
	}
	return conn
}

// retryUDP is a UDP connection to the relay handed to the engine, if the
// relay answers there now; nil if not.
func (d *Daemon) retryUDP(ctx context.Context) *relay.Conn {
	cfg, err := d.relayConfig(ctx)
	if err != nil {
		return nil
	}
	conn, err := d.udpRelay(ctx, cfg)
	if err != nil {
		d.log.Debug("the relay still does not answer over UDP", "err", err)
		return nil
	}
	d.log.Info("the relay answers over UDP again: leaving TCP")
	return conn
}

// relayCheck is how often holdRelay looks whether the server in use moved.
const relayCheck = 250 * time.Millisecond

// setRelay records the relay's state, and re-applies the peers if it
// changed: relayed peers need it up. Whether this node is on the relay
// over TCP goes to the server in a heartbeat at once: its peers show the
// path (api.Peer.RelayTCP).
func (d *Daemon) setRelay(st relayState) {
	d.mu.Lock()
	was := d.relay
	d.relay = st
	d.mu.Unlock()
	if was.overTCP() != st.overTCP() {
		d.heartbeatNow()
	}
	if was.up != st.up || was.tcp != st.tcp {
		d.log.Info("relay", "up", st.up, "tcp", st.tcp)
		d.changed()
	}
}

// overTCP says the relay is up over TCP.
func (r relayState) overTCP() bool { return r.up && r.tcp }
