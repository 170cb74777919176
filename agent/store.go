package agent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// StoreFile is the agent's database inside the node's state dir.
const StoreFile = "agent.db"

// The store keeps what a node knows of its peers' identities, and its
// events: received ones (the inbox) and sent ones (the outbox, with each
// one's delivery state). Every write is durable before it is reported
// (synchronous=FULL): an event acknowledged as stored survives a crash.
const schema = `
CREATE TABLE IF NOT EXISTS peers (
	node_id      TEXT PRIMARY KEY,
	node_name    TEXT NOT NULL,
	vpn_ip       TEXT NOT NULL,
	node_key     TEXT NOT NULL DEFAULT '', -- the server's pin of its identity key
	identity_key TEXT NOT NULL DEFAULT '', -- the key itself, once learned from the peer
	pinned_key   TEXT NOT NULL DEFAULT '', -- set by pairing: the verified key
	paired_at    INTEGER NOT NULL DEFAULT 0,
	blocked      INTEGER NOT NULL DEFAULT 0,
	key_alert    TEXT NOT NULL DEFAULT '', -- why the server's key for it was refused
	updated      INTEGER NOT NULL DEFAULT 0 -- unix ms of the server's last word on it
);
CREATE TABLE IF NOT EXISTS events (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	dir       TEXT NOT NULL,              -- in or out
	event_id  TEXT,                       -- NULL for a draft not yet signed
	node_id   TEXT NOT NULL,
	kind      TEXT NOT NULL,
	body      TEXT NOT NULL,
	raw       TEXT NOT NULL DEFAULT '',   -- the signed event as JSON
	at        INTEGER NOT NULL,           -- unix ms: received, or created
	status    TEXT NOT NULL DEFAULT '',   -- out: queued, delivered or failed
	reason    TEXT NOT NULL DEFAULT '',
	attempts  INTEGER NOT NULL DEFAULT 0,
	UNIQUE (dir, event_id)
);
CREATE INDEX IF NOT EXISTS events_queued ON events (status) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS peers_name ON peers (lower(node_name));
CREATE INDEX IF NOT EXISTS peers_vpn_ip ON peers (vpn_ip);
`

// store is the agent's SQLite database, or a transaction in it (see
// inTx).
type store struct {
	db   querier
	conn *sql.DB // nil in a transaction
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs f on the store inside one transaction, committed if f returns
// nil: a change to many peers is one write to disk, not one each.
func (s *store) inTx(ctx context.Context, f func(*store) error) error {
	tx, err := s.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(&store{db: tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func openStore(dir string) (*store, error) {
	path := filepath.Join(dir, StoreFile)
	// Created private before SQLite opens it; the WAL inherits the mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent store: %w", err)
	}
	f.Close()
	q := url.Values{"_txlock": {"immediate"}}
	for _, p := range []string{"busy_timeout(10000)", "synchronous(FULL)", "journal_mode(WAL)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("agent store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("agent store %s: %w", path, err)
	}
	return &store{db: db, conn: db}, nil
}

// storeVersion is the schema's version, kept in SQLite's user_version.
const storeVersion = 1

func migrate(db *sql.DB) error {
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		return err
	}
	if v > storeVersion {
		return fmt.Errorf("made by a newer wire (schema %d; this one knows %d): upgrade wire", v, storeVersion)
	}
	if _, err := db.Exec(schema); err != nil {
		return err
	}
	_, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, storeVersion))
	return err
}

func (s *store) close() error { return s.conn.Close() }

// peerRow is a peer as the store holds it.
type peerRow struct {
	NodeID, NodeName, VPNIP, NodeKey string
	IdentityKey, PinnedKey, KeyAlert string
	PairedAt                         int64
	Blocked                          bool
}

const peerColumns = `node_id, node_name, vpn_ip, node_key, identity_key, pinned_key, paired_at, blocked, key_alert`

func scanPeer(row interface{ Scan(...any) error }) (peerRow, error) {
	var p peerRow
	err := row.Scan(&p.NodeID, &p.NodeName, &p.VPNIP, &p.NodeKey, &p.IdentityKey, &p.PinnedKey, &p.PairedAt, &p.Blocked, &p.KeyAlert)
	return p, err
}

// ErrUnknownPeer says no node of that name or address was ever seen.
var ErrUnknownPeer = errors.New("no peer of that name or VPN IP is known to this node")

// peerByID finds a peer by node_id.
func (s *store) peerByID(ctx context.Context, id string) (peerRow, error) {
	p, err := scanPeer(s.db.QueryRowContext(ctx, `SELECT `+peerColumns+` FROM peers WHERE node_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("%w: %q", ErrUnknownPeer, id)
	}
	return p, err
}

// peer finds a peer by node_id, name (any case) or VPN IP.
func (s *store) peer(ctx context.Context, who string) (peerRow, error) {
	p, err := scanPeer(s.db.QueryRowContext(ctx, `SELECT `+peerColumns+` FROM peers
		WHERE node_id = ?1 OR lower(node_name) = lower(?1) OR vpn_ip = ?1 ORDER BY node_id = ?1 DESC, updated DESC LIMIT 1`, who))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("%w: %q", ErrUnknownPeer, who)
	}
	return p, err
}

func (s *store) peers(ctx context.Context) ([]peerRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+peerColumns+` FROM peers ORDER BY node_name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []peerRow
	for rows.Next() {
		p, err := scanPeer(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// savePeer records what the server says of a peer. A peer whose pin
// changed loses the key learned under the old pin; its pinned key stays.
func (s *store) savePeer(ctx context.Context, p peerRow, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO peers (node_id, node_name, vpn_ip, node_key, updated) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (node_id) DO UPDATE SET node_name = excluded.node_name, vpn_ip = excluded.vpn_ip,
			identity_key = CASE WHEN node_key = excluded.node_key THEN identity_key ELSE '' END,
			node_key = excluded.node_key, updated = excluded.updated`, p.NodeID, p.NodeName, p.VPNIP, p.NodeKey, now.UnixMilli())
	return err
}

// verifiedNamed returns a verified peer of that name other than nodeID.
func (s *store) verifiedNamed(ctx context.Context, name, nodeID string) (peerRow, bool, error) {
	p, err := scanPeer(s.db.QueryRowContext(ctx, `SELECT `+peerColumns+` FROM peers
		WHERE lower(node_name) = lower(?) AND node_id != ? AND pinned_key != '' LIMIT 1`, name, nodeID))
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	return p, err == nil, err
}

func (s *store) setPeerField(ctx context.Context, nodeID, column string, v any) error {
	switch column {
	case "identity_key", "blocked", "key_alert":
	default:
		panic("agent: setPeerField " + column)
	}
	_, err := s.db.ExecContext(ctx, `UPDATE peers SET `+column+` = ? WHERE node_id = ?`, v, nodeID)
	return err
}

// pin records a verified key for a peer, as pairing ends.
func (s *store) pin(ctx context.Context, nodeID, key string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE peers SET pinned_key = ?, paired_at = ?, key_alert = '' WHERE node_id = ?`,
		key, at.UnixMilli(), nodeID)
	return err
}

// stored is an event as the store holds it.
type stored struct {
	Seq      int64
	Dir      string
	EventID  string
	NodeID   string
	Kind     string
	Body     string
	Raw      string
	At       int64
	Status   string
	Reason   string
	Attempts int
}

const eventColumns = `seq, dir, COALESCE(event_id, ''), node_id, kind, body, raw, at, status, reason, attempts`

func scanEvent(row interface{ Scan(...any) error }) (stored, error) {
	var e stored
	err := row.Scan(&e.Seq, &e.Dir, &e.EventID, &e.NodeID, &e.Kind, &e.Body, &e.Raw, &e.At, &e.Status, &e.Reason, &e.Attempts)
	return e, err
}

// receive stores an incoming event; it reports false for one already
// held (the same event_id), which is not stored again.
func (s *store) receive(ctx context.Context, e stored) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO events (dir, event_id, node_id, kind, body, raw, at) VALUES ('in', ?, ?, ?, ?, ?, ?)
		ON CONFLICT (dir, event_id) DO NOTHING`, e.EventID, e.NodeID, e.Kind, e.Body, e.Raw, e.At)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// queue stores an outgoing event (signed, or a draft) as queued.
func (s *store) queue(ctx context.Context, e stored) (int64, error) {
	var id any
	if e.EventID != "" {
		id = e.EventID
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO events (dir, event_id, node_id, kind, body, raw, at, status, reason)
		VALUES ('out', ?, ?, ?, ?, ?, ?, 'queued', ?)`, id, e.NodeID, e.Kind, e.Body, e.Raw, e.At, e.Reason)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// sign turns a draft into a signed event.
func (s *store) sign(ctx context.Context, seq int64, eventID, raw string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE events SET event_id = ?, raw = ? WHERE seq = ?`, eventID, raw, seq)
	return err
}

// settle records the outcome of a delivery attempt. A settled event stays
// settled: a slower attempt that ended otherwise cannot undo it.
func (s *store) settle(ctx context.Context, seq int64, status, reason string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE events SET status = ?, reason = ?, attempts = attempts + 1
		WHERE seq = ? AND status = 'queued'`, status, reason, seq)
	return err
}

// queued lists the outbox's queued events, oldest first.
func (s *store) queued(ctx context.Context, nodeID string) ([]stored, error) {
	q := `SELECT ` + eventColumns + ` FROM events WHERE status = 'queued'`
	args := []any{}
	if nodeID != "" {
		q += ` AND node_id = ?`
		args = append(args, nodeID)
	}
	return s.events(ctx, q+` ORDER BY seq`, args...)
}

// queuedPeers lists the node_ids with queued events.
func (s *store) queuedPeers(ctx context.Context) ([]string, error) {
	return column[string](s.db.QueryContext(ctx, `SELECT DISTINCT node_id FROM events WHERE status = 'queued'`))
}

// column reads a query's one column.
func column[T any](rows *sql.Rows, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// expire fails the queued events made before t.
func (s *store) expire(ctx context.Context, t time.Time, reason string) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE events SET status = 'failed', reason = ? WHERE status = 'queued' AND at < ?`, reason, t.UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queuedSeqs lists the seqs of a peer's queued events, oldest first.
func (s *store) queuedSeqs(ctx context.Context, nodeID string, limit int) ([]int64, error) {
	return column[int64](s.db.QueryContext(ctx, `SELECT seq FROM events WHERE status = 'queued' AND node_id = ? ORDER BY seq LIMIT ?`, nodeID, limit))
}

// tail lists events after seq, newest last, at most limit of them.
func (s *store) tail(ctx context.Context, dir, nodeID string, since int64, limit int) ([]stored, error) {
	var where []string
	args := []any{since}
	where = append(where, "seq > ?")
	if dir != "" {
		where = append(where, "dir = ?")
		args = append(args, dir)
	}
	if nodeID != "" {
		where = append(where, "node_id = ?")
		args = append(args, nodeID)
	}
	args = append(args, limit)
	return s.events(ctx, `SELECT * FROM (SELECT `+eventColumns+` FROM events WHERE `+strings.Join(where, " AND ")+
		` ORDER BY seq DESC LIMIT ?) ORDER BY seq`, args...)
}

func (s *store) events(ctx context.Context, q string, args ...any) ([]stored, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stored
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// prune keeps the newest keep events of a direction (queued ones always).
func (s *store) prune(ctx context.Context, dir string, keep int) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE dir = ? AND status != 'queued' AND seq <= (
		SELECT seq FROM events WHERE dir = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`, dir, dir, keep)
	return err
}
