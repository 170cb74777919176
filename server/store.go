package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wire-mesh/wire/api"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// StoreFile is the name of the store inside the state dir.
const StoreFile = "wire.db"

const schemaVersion = "1"

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
	last_seen     INTEGER NOT NULL
);
CREATE TABLE join_keys (
	id         TEXT PRIMARY KEY,
	hash       BLOB NOT NULL,
	reusable   INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	uses       INTEGER NOT NULL DEFAULT 0
);
`

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

// OpenStore opens the store in dir, creating it if dir holds none. A store
// that exists but cannot be read whole is an error, never a fresh start.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, StoreFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := createStore(path); err != nil {
			return nil, err
		}
	}
	if err := checkHeader(path); err != nil {
		return nil, fmt.Errorf("store %s is damaged and was not touched: %w; restore it from a backup, or move it away to start with no nodes", path, err)
	}
	s, err := openDB(path)
	if err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store %s is damaged and was not touched: %w; restore it from a backup, or move it away to start with no nodes", path, err)
	}
	return s, nil
}

func openDB(path string) (*Store, error) {
	q := url.Values{"_txlock": {"immediate"}}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	// One connection: writes are serialised anyway, and PRAGMA data_version
	// then changes only when another process (an admin command) writes.
	db.SetMaxOpenConns(1)
	return &Store{db: db, path: path}, nil
}

// createStore builds a new store beside path and renames it into place, so
// a crash during creation leaves either no store or a whole one.
func createStore(path string) error {
	tmp := path + ".new"
	for _, f := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		os.Remove(f)
	}
	s, err := openDB(tmp)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(schema+`INSERT INTO meta VALUES ('schema_version', ?)`, schemaVersion)
	if err == nil {
		_, err = s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600) // node keys and key hashes: the WAL inherits this
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("creating store %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkHeader looks at the file before SQLite opens it for writing, which
// would quietly turn an empty (truncated) file into a new database.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(f, head); err != nil {
		return fmt.Errorf("the file is truncated (%v)", err)
	}
	if string(head[:16]) != "SQLite format 3\x00" {
		return errors.New("the file is not a SQLite database")
	}
	return nil
}

func (s *Store) check() error {
	var res string
	if err := s.db.QueryRow(`PRAGMA quick_check`).Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	var v string
	err := s.db.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	if err != nil {
		return fmt.Errorf("no wire schema (truncated or not a wire store?): %w", err)
	}
	if v != schemaVersion {
		return fmt.Errorf("schema version %s, this wire understands %s", v, schemaVersion)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

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
}

const nodeColumns = `node_id, node_name, COALESCE(node_key, ''), wg_public_key, vpn_ip,
	public_ip, lan_ip, port, nat_port, created_at, last_seen`

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
		if err := rows.Scan(&r.NodeID, &r.NodeName, &r.NodeKey, &r.WGPublicKey, &r.VPNIP,
			&r.PublicIP, &r.LANIP, &r.Port, &r.NATPort, &created, &seen); err != nil {
			return nil, err
		}
		r.Created, r.LastSeen = time.Unix(created, 0), time.Unix(seen, 0)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Enrol stores a new node. With keyID set it also spends one use of that
// join key, in the same transaction, after checking secret and expiry.
func (s *Store) Enrol(ctx context.Context, r record, key *api.JoinKey, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if key != nil {
		if err := spendKey(ctx, tx, *key, now); err != nil {
			return err
		}
	}
	var nodeKey any
	if r.NodeKey != "" {
		nodeKey = r.NodeKey
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.NodeID, r.NodeName, nodeKey, r.WGPublicKey, r.VPNIP, r.PublicIP,
		r.Port, r.NATPort, r.LANIP, r.Created.Unix(), r.LastSeen.Unix())
	if err != nil {
		return conflictError(err)
	}
	return tx.Commit()
}

func spendKey(ctx context.Context, tx *sql.Tx, key api.JoinKey, now time.Time) error {
	var hash []byte
	var reusable bool
	var expires int64
	var uses int
	err := tx.QueryRowContext(ctx, `SELECT hash, reusable, expires_at, uses FROM join_keys WHERE id = ?`, key.ID).
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
	_, err = tx.ExecContext(ctx, `UPDATE join_keys SET uses = uses + 1 WHERE id = ?`, key.ID)
	return err
}

// ErrConflict says a unique field is taken by another node.
type ErrConflict struct{ Field string }

func (e *ErrConflict) Error() string { return e.Field + " is already taken by another node" }

func conflictError(err error) error {
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
// its key, spending a use of the join key, in one transaction.
func (s *Store) Claim(ctx context.Context, r record, key *api.JoinKey, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := spendKey(ctx, tx, *key, now); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE nodes SET node_key = ?, node_name = ?, wg_public_key = ?,
		public_ip = ?, port = ?, nat_port = ?, lan_ip = ?, last_seen = ? WHERE node_id = ? AND node_key IS NULL`,
		r.NodeKey, r.NodeName, r.WGPublicKey, r.PublicIP, r.Port, r.NATPort, r.LANIP, r.LastSeen.Unix(), r.NodeID)
	if err != nil {
		return conflictError(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return &ErrConflict{Field: "node_id"}
	}
	return tx.Commit()
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

// RemoveNode deletes the node with the given name.
func (s *Store) RemoveNode(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM nodes WHERE node_name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("node %q: %w", name, ErrNotFound)
	}
	return nil
}

// CreateKey stores a new join key for the server with the given pin and
// returns it; only its hash is kept.
func (s *Store) CreateKey(ctx context.Context, pin api.Pin, reusable bool, expires time.Time) (api.JoinKey, error) {
	k := api.NewJoinKey(pin)
	_, err := s.db.ExecContext(ctx, `INSERT INTO join_keys (id, hash, reusable, expires_at, created_at) VALUES (?, ?, ?, ?, ?)`,
		k.ID, api.SecretHash(k.Secret), reusable, expires.Unix(), time.Now().Unix())
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
			NATPort: r.NATPort, Status: st, LastSeenAgo: int64(ago / time.Second)})
	}
	return out, nil
}
