package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wire-mesh/wire/api"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// StoreFile is the name of the store inside the state dir.
const StoreFile = "wire.db"

const schemaVersion = "2"

const schema = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE nodes (
	node_id       TEXT PRIMARY KEY,
	node_name     TEXT NOT NULL UNIQUE,
	node_key      TEXT UNIQUE,          -- pin of the node's TLS key; NULL in --open mode
	wg_public_key TEXT NOT NULL UNIQUE,
	vpn_ip        TEXT NOT NULL UNIQUE,
	public_ip     TEXT NOT NULL DEFAULT '',
	port          INTEGER NOT NULL DEFAULT 0,
	nat_port      INTEGER NOT NULL DEFAULT 0,
	lan_ip        TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	last_seen     INTEGER NOT NULL,
	tags          TEXT NOT NULL DEFAULT '' -- space-separated, sorted: tag:a tag:b
);
CREATE TABLE join_keys (
	id         TEXT PRIMARY KEY,
	hash       BLOB NOT NULL,
	reusable   INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	uses       INTEGER NOT NULL DEFAULT 0,
	tags       TEXT NOT NULL DEFAULT '' -- given to the nodes it enrols
);
`

// migrations bring a store of schema version N (the index) up to N+1.
var migrations = map[string]string{
	"1": `ALTER TABLE nodes ADD COLUMN tags TEXT NOT NULL DEFAULT '';
ALTER TABLE join_keys ADD COLUMN tags TEXT NOT NULL DEFAULT '';`,
}

// Store is wire's durable state: a SQLite database in WAL mode whose every
// acknowledged write has reached the disk (synchronous=FULL). Heartbeats
// stay in memory and reach it in batches.
type Store struct {
	db   *sql.DB
	path string
}

// Sentinel errors of enrolment.
var (
	ErrKeyInvalid = errors.New("join key is not valid on this server")
	ErrKeyExpired = errors.New("join key has expired: create a new one with `wire server key create`")
	ErrKeyUsed    = errors.New("join key was already used: it is single-use; create another with `wire server key create` (or a --reusable one)")
	ErrNotFound   = errors.New("not found")
)

// Close checkpoints the write-ahead log into the database file, so that
// after a clean shutdown wire.db alone holds everything, and closes it.
func (s *Store) Close() error {
	_, err := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Meta reads a setting; a missing one is "".
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// SetMeta writes a setting.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// DataVersion changes whenever another process commits to the store.
func (s *Store) DataVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v)
	return v, err
}

// record is a node as the store holds it.
type record struct {
	NodeID, NodeName, NodeKey, WGPublicKey, VPNIP string
	PublicIP, LANIP                               string
	Port, NATPort                                 int
	Created, LastSeen                             time.Time
	Tags                                          []string // sorted
}

const nodeColumns = `node_id, node_name, COALESCE(node_key, ''), wg_public_key, vpn_ip,
	public_ip, lan_ip, port, nat_port, created_at, last_seen, tags`

// Nodes returns every node in the store.
func (s *Store) Nodes(ctx context.Context) ([]record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes ORDER BY node_name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []record
	for rows.Next() {
		var r record
		var created, seen int64
		var tags string
		if err := rows.Scan(&r.NodeID, &r.NodeName, &r.NodeKey, &r.WGPublicKey, &r.VPNIP,
			&r.PublicIP, &r.LANIP, &r.Port, &r.NATPort, &created, &seen, &tags); err != nil {
			return nil, err
		}
		r.Created, r.LastSeen, r.Tags = time.Unix(created, 0), time.Unix(seen, 0), splitTags(tags)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Enrol stores a new node. With a key it also spends one use of that join
// key, in the same transaction, after checking secret and expiry, and
// gives the node the key's tags: it returns them.
func (s *Store) Enrol(ctx context.Context, r record, key *api.JoinKey, now time.Time) ([]string, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var tags []string
	if key != nil {
		if tags, err = spendKey(ctx, tx, *key, now); err != nil {
			return nil, err
		}
	}
	var nodeKey any
	if r.NodeKey != "" {
		nodeKey = r.NodeKey
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO nodes (node_id, node_name, node_key, wg_public_key, vpn_ip,
		public_ip, port, nat_port, lan_ip, created_at, last_seen, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.NodeID, r.NodeName, nodeKey, r.WGPublicKey, r.VPNIP, r.PublicIP,
		r.Port, r.NATPort, r.LANIP, r.Created.Unix(), r.LastSeen.Unix(), joinTags(tags))
	if err != nil {
		return nil, conflictError(err)
	}
	return tags, tx.Commit()
}

// spendKey checks key and spends one use of it; it returns the key's tags.
func spendKey(ctx context.Context, tx *sql.Tx, key api.JoinKey, now time.Time) ([]string, error) {
	if err := checkKey(ctx, tx, key, now); err != nil {
		return nil, err
	}
	var tags string
	err := tx.QueryRowContext(ctx, `UPDATE join_keys SET uses = uses + 1 WHERE id = ? RETURNING tags`, key.ID).Scan(&tags)
	return splitTags(tags), err
}

// CheckKey says whether key would admit a node now, without spending it.
func (s *Store) CheckKey(ctx context.Context, key api.JoinKey, now time.Time) error {
	return checkKey(ctx, s.db, key, now)
}

// querier is what checkKey needs of a database or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func checkKey(ctx context.Context, q querier, key api.JoinKey, now time.Time) error {
	var hash []byte
	var reusable bool
	var expires int64
	var uses int
	err := q.QueryRowContext(ctx, `SELECT hash, reusable, expires_at, uses FROM join_keys WHERE id = ?`, key.ID).
		Scan(&hash, &reusable, &expires, &uses)
	switch {
	case errors.Is(err, sql.ErrNoRows) || (err == nil && !api.SecretMatches(key.Secret, hash)):
		return ErrKeyInvalid
	case err != nil:
		return err
	case now.Unix() >= expires:
		return ErrKeyExpired
	case !reusable && uses > 0:
		return ErrKeyUsed
	}
	return nil
}

// ErrConflict says a unique field is taken by another node.
type ErrConflict struct{ Field string }

func (e *ErrConflict) Error() string { return e.Field + " is already taken by another node" }

func conflictError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if !strings.Contains(msg, "UNIQUE constraint failed") {
		return err
	}
	for _, f := range []string{"node_id", "node_name", "node_key", "wg_public_key", "vpn_ip"} {
		if strings.Contains(msg, "nodes."+f) {
			return &ErrConflict{Field: f}
		}
	}
	return err
}

// Claim gives a node imported from an --open server (one without a key)
// its key and the join key's tags, spending a use of the join key, in one
// transaction; it returns the tags.
func (s *Store) Claim(ctx context.Context, r record, key *api.JoinKey, now time.Time) ([]string, error) {
	if key == nil {
		return nil, errors.New("claiming a node needs a join key")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	tags, err := spendKey(ctx, tx, *key, now)
	if err != nil {
		return nil, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE nodes SET node_key = ?, node_name = ?, wg_public_key = ?,
		public_ip = ?, port = ?, nat_port = ?, lan_ip = ?, last_seen = ?, tags = ? WHERE node_id = ? AND node_key IS NULL`,
		r.NodeKey, r.NodeName, r.WGPublicKey, r.PublicIP, r.Port, r.NATPort, r.LANIP, r.LastSeen.Unix(), joinTags(tags), r.NodeID)
	if err != nil {
		return nil, conflictError(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, &ErrConflict{Field: "node_id"}
	}
	return tags, tx.Commit()
}

// UpdateIdentity writes a node's name and WireGuard key, which change
// rarely and must survive a crash once acknowledged.
func (s *Store) UpdateIdentity(ctx context.Context, r record) error {
	_, err := s.db.ExecContext(ctx, `UPDATE nodes SET node_name = ?, wg_public_key = ? WHERE node_id = ?`,
		r.NodeName, r.WGPublicKey, r.NodeID)
	return conflictError(err)
}

// SaveSeen writes heartbeat facts (last seen, endpoints) of many nodes in
// one transaction.
func (s *Store) SaveSeen(ctx context.Context, rs []record) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `UPDATE nodes SET public_ip = ?, port = ?, nat_port = ?, lan_ip = ?, last_seen = ? WHERE node_id = ?`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range rs {
		if _, err := stmt.ExecContext(ctx, r.PublicIP, r.Port, r.NATPort, r.LANIP, r.LastSeen.Unix(), r.NodeID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// RemoveNode deletes the node with the given name, in any case (names are
// unique regardless of case), and returns its name as stored.
func (s *Store) RemoveNode(ctx context.Context, name string) (string, error) {
	var removed string
	err := s.db.QueryRowContext(ctx, `DELETE FROM nodes WHERE node_name = ? COLLATE NOCASE RETURNING node_name`, name).Scan(&removed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("node %q: %w", name, ErrNotFound)
	}
	return removed, err
}

// CreateKey stores a new join key for the server with the given pin and
// returns it; only its hash is kept. The nodes it enrols get tags.
func (s *Store) CreateKey(ctx context.Context, pin api.Pin, reusable bool, expires time.Time, tags []string) (api.JoinKey, error) {
	k := api.NewJoinKey(pin)
	_, err := s.db.ExecContext(ctx, `INSERT INTO join_keys (id, hash, reusable, expires_at, created_at, tags) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, api.SecretHash(k.Secret), reusable, expires.Unix(), time.Now().Unix(), joinTags(tags))
	if err != nil {
		return api.JoinKey{}, fmt.Errorf("storing join key: %w", err)
	}
	return k, nil
}

// List returns every node as `wire server nodes` shows it. Last-seen times
// are as fresh as the server's last batch write (at most 10 s old).
func (s *Store) List(ctx context.Context, now time.Time) ([]api.NodeStatus, error) {
	recs, err := s.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.NodeStatus, 0, len(recs))
	for _, r := range recs {
		ago := max(now.Sub(r.LastSeen), 0)
		st := "offline"
		if ago < api.Online {
			st = "online"
		}
		out = append(out, api.NodeStatus{NodeName: r.NodeName, VPNIP: r.VPNIP, PublicIP: r.PublicIP,
			NATPort: r.NATPort, Status: st, LastSeenAgo: int64(ago / time.Second), Tags: r.Tags})
	}
	return out, nil
}
