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

const schemaVersion = "5"

// schemaSQLite is the store's schema in SQLite. Every write that other
// servers must notice takes the next value of the single revision counter
// in its transaction and stamps it on the rows it writes (or, for a
// removal, on the node's row in removals): a server that has seen revision
// R reads what changed with revision > R. The counter's row lock orders
// the writers, so revisions become visible in the order they are taken.
const schemaSQLite = `
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
	tags          TEXT NOT NULL DEFAULT '', -- space-separated, sorted: tag:a tag:b
	revision      INTEGER NOT NULL DEFAULT 0,
	down_at       INTEGER NOT NULL DEFAULT 0, -- when it said it goes down (wire down); 0: never
	expires_at    INTEGER NOT NULL DEFAULT 0  -- when it must authenticate again with a join key; 0: never
);
CREATE TABLE join_keys (
	id         TEXT PRIMARY KEY,
	hash       BLOB NOT NULL,
	reusable   INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	uses       INTEGER NOT NULL DEFAULT 0,
	tags       TEXT NOT NULL DEFAULT '', -- given to the nodes it enrols
	node_ttl   INTEGER NOT NULL DEFAULT 0 -- seconds: the nodes it admits expire that long after; 0: never
);
` + revisionSchema

// revisionSchema is the part of the schema that tells servers sharing a
// store what changed (schema version 3).
const revisionSchema = `
CREATE INDEX nodes_revision ON nodes (revision);
CREATE TABLE removals (
	node_id    TEXT PRIMARY KEY,
	revision   INTEGER NOT NULL,
	removed_at INTEGER NOT NULL
);
CREATE INDEX removals_revision ON removals (revision);
CREATE TABLE revision (value INTEGER NOT NULL);
INSERT INTO revision VALUES (0);
`

// migrations bring a store of schema version N (the index) up to N+1.
var migrations = map[string]string{
	"1": `ALTER TABLE nodes ADD COLUMN tags TEXT NOT NULL DEFAULT '';
ALTER TABLE join_keys ADD COLUMN tags TEXT NOT NULL DEFAULT '';`,
	"2": `ALTER TABLE nodes ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;` + revisionSchema,
	"3": downAtColumn,
	"4": expiryColumns,
}

// downAtColumn is schema version 4's change, in either dialect.
const downAtColumn = `ALTER TABLE nodes ADD COLUMN down_at BIGINT NOT NULL DEFAULT 0;`

// expiryColumns are schema version 5's change, in either dialect.
const expiryColumns = `ALTER TABLE nodes ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE join_keys ADD COLUMN node_ttl BIGINT NOT NULL DEFAULT 0;`

// Store is wire's durable state: by default a SQLite database in WAL mode
// whose every acknowledged write has reached the disk (synchronous=FULL);
// or a PostgreSQL database that several servers share. Heartbeats stay in
// memory and reach it in batches.
type Store struct {
	db      *sql.DB
	path    string // the SQLite file, or the PostgreSQL URL without its password
	dialect dialect
	// wrote, if set, hears how long each write that changes the mesh
	// took, commit included (the server's metrics). Set before use.
	wrote func(time.Duration)
}

func (s *Store) conn() bound { return bound{s.db, s.dialect} }

// begin starts a transaction whose queries are bound to the store's dialect.
func (s *Store) begin(ctx context.Context) (*sql.Tx, bound, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	return tx, bound{tx, s.dialect}, err
}

// Sentinel errors of enrolment.
var (
	ErrKeyInvalid = errors.New("join key is not valid on this server")
	ErrKeyExpired = errors.New("join key has expired: create a new one with `wire server key create`")
	ErrKeyUsed    = errors.New("join key was already used: it is single-use; create another with `wire server key create` (or a --reusable one)")
	ErrNotFound   = errors.New("not found")
)

// Close closes the store. A SQLite store first checkpoints its
// write-ahead log into the database file, so that after a clean shutdown
// wire.db alone holds everything.
func (s *Store) Close() error {
	var err error
	if s.dialect == dialectSQLite {
		_, err = s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path is the database file, or the PostgreSQL URL without its password.
func (s *Store) Path() string { return s.path }

// Shared says whether other servers may write the store meanwhile: a
// PostgreSQL store is made for replicas.
func (s *Store) Shared() bool { return s.dialect == dialectPostgres }

// Meta reads a setting; a missing one is "".
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.conn().row(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// SetMeta writes a setting, and tells other servers that the store changed.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	return s.write(ctx, func(b bound, _ int64) error {
		_, err := b.exec(ctx, `INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
}

// InitMeta writes a setting unless it is set, and returns its value.
func (s *Store) InitMeta(ctx context.Context, key, value string) (string, error) {
	err := s.write(ctx, func(b bound, _ int64) error {
		_, err := b.exec(ctx, `INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO NOTHING`, key, value)
		return err
	})
	if err != nil {
		return "", err
	}
	return s.Meta(ctx, key)
}

// write runs f in a transaction that takes the next revision, which f
// stamps on what it writes.
func (s *Store) write(ctx context.Context, f func(b bound, rev int64) error) error {
	if s.wrote != nil {
		defer func(start time.Time) { s.wrote(time.Since(start)) }(time.Now())
	}
	tx, b, err := s.begin(ctx)
	if err != nil {
		return s.unavailable(err)
	}
	defer tx.Rollback()
	rev, err := nextRevision(ctx, b)
	if err != nil {
		return s.unavailable(err)
	}
	if err := f(b, rev); err != nil {
		return s.unavailable(err)
	}
	return s.unavailable(tx.Commit())
}

func nextRevision(ctx context.Context, b bound) (int64, error) {
	var rev int64
	if err := b.row(ctx, `UPDATE revision SET value = value + 1 RETURNING value`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("taking a revision: %w", err)
	}
	return rev, nil
}

// Revision is the revision of the store's last write.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	err := s.conn().row(ctx, `SELECT value FROM revision`).Scan(&rev)
	return rev, err
}

// record is a node as the store holds it.
type record struct {
	NodeID, NodeName, NodeKey, WGPublicKey, VPNIP string
	PublicIP, LANIP                               string
	Port, NATPort                                 int
	Created, LastSeen                             time.Time
	Tags                                          []string // sorted
	Revision                                      int64    // of its last write, as read
	// DownAt is when the node last said it goes down (wire down), zero
	// if never: until a later heartbeat it is offline, on every server.
	DownAt time.Time
	// Up says that a heartbeat came after this server saw the node go
	// down: SaveSeen clears the stored DownAt (which no server's older
	// news of the node may do).
	Up bool
	// ExpiresAt is when the node must authenticate again with a join key
	// (zero: never): from then on it is offline and refused, until it
	// does (see wire server key create --expire).
	ExpiresAt time.Time
}

const nodeColumns = `node_id, node_name, COALESCE(node_key, ''), wg_public_key, vpn_ip,
	public_ip, lan_ip, port, nat_port, created_at, last_seen, tags, revision, down_at, expires_at`

// Nodes returns every node in the store.
func (s *Store) Nodes(ctx context.Context) ([]record, error) {
	return scanNodes(s.conn().rows(ctx, `SELECT `+nodeColumns+` FROM nodes ORDER BY node_name`))
}

// Changes returns what changed after revision since: the nodes written
// and the ids of the nodes removed, each as of its last change, and the
// revision they are complete up to. It may return changes made after that
// revision too, which the next call returns again.
func (s *Store) Changes(ctx context.Context, since int64) (recs []record, removed []string, rev int64, err error) {
	b := s.conn()
	// Read first, the revision: every write up to it has committed, so the
	// reads that follow see all of them.
	if err := b.row(ctx, `SELECT value FROM revision`).Scan(&rev); err != nil || rev == since {
		return nil, nil, rev, err
	}
	written, err := scanNodes(b.rows(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE revision > ?`, since))
	if err != nil {
		return nil, nil, 0, err
	}
	rows, err := b.rows(ctx, `SELECT node_id, revision FROM removals WHERE revision > ?`, since)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rows.Close()
	gone := make(map[string]int64)
	for rows.Next() {
		var id string
		var r int64
		if err := rows.Scan(&id, &r); err != nil {
			return nil, nil, 0, err
		}
		gone[id] = r
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, err
	}
	// A node read before its removal, or removed and enrolled again, is
	// what its later change says.
	for _, r := range written {
		if gone[r.NodeID] < r.Revision {
			delete(gone, r.NodeID)
			recs = append(recs, r)
		}
	}
	for id := range gone {
		removed = append(removed, id)
	}
	return recs, removed, rev, nil
}

func scanNodes(rows *sql.Rows, err error) ([]record, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []record
	for rows.Next() {
		var r record
		var created, seen, down, expires int64
		var tags string
		if err := rows.Scan(&r.NodeID, &r.NodeName, &r.NodeKey, &r.WGPublicKey, &r.VPNIP,
			&r.PublicIP, &r.LANIP, &r.Port, &r.NATPort, &created, &seen, &tags, &r.Revision, &down, &expires); err != nil {
			return nil, err
		}
		r.Created, r.LastSeen, r.Tags = time.Unix(created, 0), time.Unix(seen, 0), splitTags(tags)
		r.DownAt, r.ExpiresAt = timeOrZero(down), timeOrZero(expires)
		out = append(out, r)
	}
	return out, rows.Err()
}

// grant is what a join key gives the node it admits.
type grant struct {
	Tags      []string
	ExpiresAt time.Time // when the node must authenticate again; zero: never
}

// Enrol stores a new node. With a key it also spends one use of that join
// key, in the same transaction, after checking secret and expiry, and
// gives the node what the key grants: it returns that.
func (s *Store) Enrol(ctx context.Context, r record, key *api.JoinKey, now time.Time) (grant, error) {
	var g grant
	err := s.write(ctx, func(b bound, rev int64) error {
		var err error
		if key != nil {
			if g, err = spendKey(ctx, b, *key, now); err != nil {
				return err
			}
		}
		var nodeKey any
		if r.NodeKey != "" {
			nodeKey = r.NodeKey
		}
		_, err = b.exec(ctx, `INSERT INTO nodes (node_id, node_name, node_key, wg_public_key, vpn_ip,
			public_ip, port, nat_port, lan_ip, created_at, last_seen, tags, revision, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.NodeID, r.NodeName, nodeKey, r.WGPublicKey, r.VPNIP, r.PublicIP,
			r.Port, r.NATPort, r.LANIP, r.Created.Unix(), r.LastSeen.Unix(), joinTags(g.Tags), rev, unixOrZero(g.ExpiresAt))
		if err != nil {
			return s.conflictError(err)
		}
		// A node that was removed and joins again is no longer removed.
		_, err = b.exec(ctx, `DELETE FROM removals WHERE node_id = ?`, r.NodeID)
		return err
	})
	return g, err
}

// spendKey checks key and spends one use of it; it returns what the key
// grants a node admitted at now. The use is spent only if the key still
// admits a node when its row is written: servers sharing a store may
// spend a single-use key at once, and only one of them may succeed.
func spendKey(ctx context.Context, b bound, key api.JoinKey, now time.Time) (grant, error) {
	if err := checkKey(ctx, b, key, now); err != nil {
		return grant{}, err
	}
	var tags string
	var ttl int64
	err := b.row(ctx, `UPDATE join_keys SET uses = uses + 1
		WHERE id = ? AND expires_at > ? AND (reusable OR uses = 0) RETURNING tags, node_ttl`, key.ID, now.Unix()).Scan(&tags, &ttl)
	if errors.Is(err, sql.ErrNoRows) {
		if err := checkKey(ctx, b, key, now); err != nil {
			return grant{}, err
		}
		return grant{}, ErrKeyUsed
	}
	g := grant{Tags: splitTags(tags)}
	if ttl > 0 {
		g.ExpiresAt = now.Add(time.Duration(ttl) * time.Second).Truncate(time.Second)
	}
	return g, err
}

// CheckKey says whether key would admit a node now, without spending it.
func (s *Store) CheckKey(ctx context.Context, key api.JoinKey, now time.Time) error {
	return s.unavailable(checkKey(ctx, s.conn(), key, now))
}

func checkKey(ctx context.Context, b bound, key api.JoinKey, now time.Time) error {
	var hash []byte
	var reusable bool
	var expires int64
	var uses int
	err := b.row(ctx, `SELECT hash, reusable, expires_at, uses FROM join_keys WHERE id = ?`, key.ID).
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

// uniqueFields are the node columns that no two nodes share.
var uniqueFields = []string{"node_id", "node_name", "node_key", "wg_public_key", "vpn_ip"}

// conflictError names the field of a uniqueness violation, as SQLite
// reports it (UNIQUE constraint failed: nodes.vpn_ip) or PostgreSQL (by
// the constraint's name, nodes_vpn_ip_key).
func (s *Store) conflictError(err error) error {
	if err == nil {
		return nil
	}
	if s.dialect == dialectPostgres {
		return pgConflict(err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "UNIQUE constraint failed") {
		return err
	}
	for _, f := range uniqueFields {
		if strings.Contains(msg, "nodes."+f) {
			return &ErrConflict{Field: f}
		}
	}
	return err
}

// Claim gives a node imported from an --open server (one without a key)
// its key and what the join key grants, spending a use of the join key,
// in one transaction; it returns the grant.
func (s *Store) Claim(ctx context.Context, r record, key *api.JoinKey, now time.Time) (grant, error) {
	if key == nil {
		return grant{}, errors.New("claiming a node needs a join key")
	}
	var g grant
	err := s.write(ctx, func(b bound, rev int64) error {
		var err error
		if g, err = spendKey(ctx, b, *key, now); err != nil {
			return err
		}
		res, err := b.exec(ctx, `UPDATE nodes SET node_key = ?, node_name = ?, wg_public_key = ?,
			public_ip = ?, port = ?, nat_port = ?, lan_ip = ?, last_seen = ?, tags = ?, revision = ?, expires_at = ? WHERE node_id = ? AND node_key IS NULL`,
			r.NodeKey, r.NodeName, r.WGPublicKey, r.PublicIP, r.Port, r.NATPort, r.LANIP, r.LastSeen.Unix(), joinTags(g.Tags), rev, unixOrZero(g.ExpiresAt), r.NodeID)
		if err != nil {
			return s.conflictError(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return &ErrConflict{Field: "node_id"}
		}
		return nil
	})
	return g, err
}

// UpdateIdentity writes a node's WireGuard key, and its name if renamed
// says the node asked for a new one; they change rarely and must survive
// a crash once acknowledged. Otherwise the stored name stays as it is: an
// admin may have changed it since this server read it.
func (s *Store) UpdateIdentity(ctx context.Context, r record, renamed bool) error {
	return s.write(ctx, func(b bound, rev int64) error {
		res, err := b.exec(ctx, `UPDATE nodes SET node_name = CASE WHEN ? THEN ? ELSE node_name END, wg_public_key = ?, revision = ? WHERE node_id = ?`,
			renamed, r.NodeName, r.WGPublicKey, rev, r.NodeID)
		if err != nil {
			return s.conflictError(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrNotEnrolled // removed meanwhile, perhaps through another server
		}
		return nil
	})
}

// SaveSeen writes heartbeat facts (last seen, endpoints) of many nodes in
// one transaction. A node's facts are written only if they are at least
// as recent as the stored ones: a node that moved to another server
// sharing the store is not set back by this one's older news of it.
func (s *Store) SaveSeen(ctx context.Context, rs []record) error {
	if s.dialect == dialectPostgres {
		return s.saveSeenPostgres(ctx, rs)
	}
	return s.write(ctx, func(b bound, rev int64) error {
		q := b.query(`UPDATE nodes SET public_ip = ?, port = ?, nat_port = ?, lan_ip = ?, last_seen = ?, revision = ?,
			down_at = CASE WHEN ? THEN 0 ELSE down_at END
			WHERE node_id = ? AND last_seen <= ?`)
		stmt, err := b.c.(*sql.Tx).PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range rs {
			seen := r.LastSeen.Unix()
			if _, err := stmt.ExecContext(ctx, r.PublicIP, r.Port, r.NATPort, r.LANIP, seen, rev, r.Up, r.NodeID, seen); err != nil {
				return err
			}
		}
		return nil
	})
}

// SaveDown records that a node said it goes down, for the servers sharing
// the store to see (and this one after a restart).
func (s *Store) SaveDown(ctx context.Context, nodeID string, at time.Time) error {
	return s.write(ctx, func(b bound, rev int64) error {
		_, err := b.exec(ctx, `UPDATE nodes SET down_at = ?, revision = ? WHERE node_id = ?`, at.Unix(), rev, nodeID)
		return err
	})
}

// RemoveNode deletes the node with the given name, in any case (names are
// unique regardless of case), and returns its name as stored.
func (s *Store) RemoveNode(ctx context.Context, name string) (string, error) {
	var removed string
	err := s.write(ctx, func(b bound, rev int64) error {
		var id string
		err := b.row(ctx, `DELETE FROM nodes WHERE lower(node_name) = lower(?) RETURNING node_id, node_name`, name).Scan(&id, &removed)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return s.tombstone(ctx, b, id, rev)
	})
	return removed, err
}

// Reauthenticate spends a use of key for the node with the given id,
// whose enrolment expired, and sets when it expires next by what the key
// grants; the node's tags stay as they are.
func (s *Store) Reauthenticate(ctx context.Context, nodeID string, key api.JoinKey, now time.Time) (grant, error) {
	var g grant
	err := s.write(ctx, func(b bound, rev int64) error {
		var err error
		if g, err = spendKey(ctx, b, key, now); err != nil {
			return err
		}
		res, err := b.exec(ctx, `UPDATE nodes SET expires_at = ?, revision = ? WHERE node_id = ?`, unixOrZero(g.ExpiresAt), rev, nodeID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrNotEnrolled // removed meanwhile
		}
		return nil
	})
	return g, s.unavailable(err)
}

// ExpireNode makes the enrolment of the node with the given name (in any
// case) expire at at, unless it expires sooner, and returns its name as
// stored: from then on it is out of the mesh until it authenticates again
// with a join key.
func (s *Store) ExpireNode(ctx context.Context, name string, at time.Time) (string, error) {
	var stored string
	err := s.write(ctx, func(b bound, rev int64) error {
		err := b.row(ctx, `UPDATE nodes SET expires_at = CASE WHEN expires_at = 0 OR expires_at > ? THEN ? ELSE expires_at END, revision = ?
			WHERE lower(node_name) = lower(?) RETURNING node_name`, at.Unix(), at.Unix(), rev, name).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node %q: %w", name, ErrNotFound)
		}
		return err
	})
	return stored, err
}

// RenameNode gives the node named old (in any case) the name new, and
// returns its old name as stored. Its peers see the new name once the
// servers read the change; the node learns it from its own entry in the
// map, and keeps it (see api.RegisterRequest.Rename).
func (s *Store) RenameNode(ctx context.Context, old, new string) (string, error) {
	if err := CheckNodeName(new); err != nil {
		return "", err
	}
	var was string
	err := s.write(ctx, func(b bound, rev int64) error {
		err := b.row(ctx, `SELECT node_name FROM nodes WHERE lower(node_name) = lower(?)`, old).Scan(&was)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node %q: %w", old, ErrNotFound)
		}
		if err != nil {
			return err
		}
		// Names are unique regardless of case, which the column's
		// constraint does not know.
		var taken int
		err = b.row(ctx, `SELECT COUNT(*) FROM nodes WHERE lower(node_name) = lower(?) AND lower(node_name) <> lower(?)`, new, old).Scan(&taken)
		if err != nil {
			return err
		}
		if taken > 0 {
			return &ErrConflict{Field: "node_name"}
		}
		_, err = b.exec(ctx, `UPDATE nodes SET node_name = ?, revision = ? WHERE lower(node_name) = lower(?)`, new, rev, old)
		return s.conflictError(err)
	})
	return was, err
}

// tombstone records that the node with the given id left the store, for
// the servers that read changes. Tombstones older than tombstoneAge go.
func (s *Store) tombstone(ctx context.Context, b bound, id string, rev int64) error {
	now := time.Now().Unix()
	if _, err := b.exec(ctx, `INSERT INTO removals VALUES (?, ?, ?)
		ON CONFLICT(node_id) DO UPDATE SET revision = excluded.revision, removed_at = excluded.removed_at`, id, rev, now); err != nil {
		return err
	}
	_, err := b.exec(ctx, `DELETE FROM removals WHERE removed_at < ?`, now-int64(tombstoneAge/time.Second))
	return err
}

// tombstoneAge is how long a removal is kept for the servers that read
// changes. One that has not read them for longer reads every node again
// (see Server.sync).
const tombstoneAge = 24 * time.Hour

// List returns every node as `wire server nodes` shows it: online, offline
// (silent, or gone down) or expired. Last-seen times are as fresh as the
// server's last batch write (at most 10 s old).
func (s *Store) List(ctx context.Context, now time.Time) ([]api.NodeStatus, error) {
	recs, err := s.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.NodeStatus, 0, len(recs))
	for _, r := range recs {
		n := node{record: r}
		st := "offline"
		switch {
		case n.expired(now):
			st = "expired"
		case n.fresh(now):
			st = "online"
		}
		ns := api.NodeStatus{NodeName: r.NodeName, VPNIP: r.VPNIP, PublicIP: r.PublicIP,
			NATPort: r.NATPort, Status: st, LastSeenAgo: int64(max(now.Sub(r.LastSeen), 0) / time.Second), Tags: r.Tags}
		if !r.ExpiresAt.IsZero() {
			ns.ExpiresAt = r.ExpiresAt.UTC().Format(time.RFC3339)
		}
		out = append(out, ns)
	}
	return out, nil
}
