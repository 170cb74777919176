package server

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// schemaPostgres is schemaSQLite in PostgreSQL's types. Names are unique
// regardless of case through an index on lower(node_name): one server
// alone checks that in memory, servers sharing a store cannot.
const schemaPostgres = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE nodes (
	node_id       TEXT PRIMARY KEY,
	node_name     TEXT NOT NULL UNIQUE,
	node_key      TEXT UNIQUE,
	wg_public_key TEXT NOT NULL UNIQUE,
	vpn_ip        TEXT NOT NULL UNIQUE,
	public_ip     TEXT NOT NULL DEFAULT '',
	port          INTEGER NOT NULL DEFAULT 0,
	nat_port      INTEGER NOT NULL DEFAULT 0,
	lan_ip        TEXT NOT NULL DEFAULT '',
	created_at    BIGINT NOT NULL,
	last_seen     BIGINT NOT NULL,
	tags          TEXT NOT NULL DEFAULT '',
	revision      BIGINT NOT NULL DEFAULT 0,
	down_at       BIGINT NOT NULL DEFAULT 0,
	expires_at    BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX nodes_name_lower ON nodes (lower(node_name));
CREATE TABLE join_keys (
	id         TEXT PRIMARY KEY,
	hash       BYTEA NOT NULL,
	reusable   BOOLEAN NOT NULL,
	expires_at BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	uses       INTEGER NOT NULL DEFAULT 0,
	tags       TEXT NOT NULL DEFAULT '',
	node_ttl   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX nodes_revision ON nodes (revision);
CREATE TABLE removals (
	node_id    TEXT PRIMARY KEY,
	revision   BIGINT NOT NULL,
	removed_at BIGINT NOT NULL
);
CREATE INDEX removals_revision ON removals (revision);
CREATE TABLE revision (value BIGINT NOT NULL);
INSERT INTO revision VALUES (0);
`

// pgMigrations bring a PostgreSQL store of schema version N (the index)
// up to schemaVersion at once.
var pgMigrations = map[string]string{
	"3": downAtColumn + expiryColumns,
	"4": expiryColumns,
}

// schemaLock is the advisory lock under which a server creates or
// migrates the schema, so that replicas starting together do it once.
const schemaLock = 0x77697265 // "wire"

// IsPostgres says whether a --store value names a PostgreSQL database.
func IsPostgres(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

// OpenPostgres opens the store in the PostgreSQL database at the URL,
// creating wire's tables if the database has none. The database must
// exist; the URL's user needs to create tables in it the first time.
func OpenPostgres(ctx context.Context, dbURL string) (*Store, error) {
	shown := redactURL(dbURL)
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", shown, err)
	}
	// No statement or lock wait may hold a request, or the revision
	// counter that every replica's writes take, for long; the URL may
	// say otherwise (options=-c statement_timeout=…).
	for k, v := range map[string]string{"statement_timeout": "15s", "lock_timeout": "10s", "application_name": "wire server"} {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	db := stdlib.OpenDB(*cfg)
	// Long-polls never hold a connection; writes are short.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, path: shown, dialect: dialectPostgres}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.preparePostgres(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", shown, err)
	}
	return s, nil
}

// preparePostgres creates the schema in an empty database, or checks and
// migrates the one there, under the schema lock.
func (s *Store) preparePostgres(ctx context.Context) error {
	tx, b, err := s.begin(ctx)
	if err != nil {
		return unreachable(err)
	}
	defer tx.Rollback()
	if _, err := b.exec(ctx, `SELECT pg_advisory_xact_lock(?)`, schemaLock); err != nil {
		return unreachable(err)
	}
	var exists bool
	if err := b.row(ctx, `SELECT to_regclass('meta') IS NOT NULL`).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := b.exec(ctx, schemaPostgres); err != nil {
			return fmt.Errorf("creating wire's tables: %w", err)
		}
		if _, err := b.exec(ctx, `INSERT INTO meta VALUES ('schema_version', ?)`, schemaVersion); err != nil {
			return err
		}
		return tx.Commit()
	}
	var v string
	if err := b.row(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil {
		return fmt.Errorf("the database has a meta table but no wire schema version (another program's database?): %w", err)
	}
	// Every PostgreSQL store began at version 3. A replica still running
	// the older wire goes on working on the migrated schema: it names the
	// columns it reads and writes.
	if step, ok := pgMigrations[v]; ok {
		if _, err := b.exec(ctx, step); err != nil {
			return fmt.Errorf("migrating the store from schema version %s: %w", v, err)
		}
		if _, err := b.exec(ctx, `UPDATE meta SET value = ? WHERE key = 'schema_version'`, schemaVersion); err != nil {
			return err
		}
		v = schemaVersion
	}
	if v != schemaVersion {
		return fmt.Errorf("schema version %s, this wire understands %s", v, schemaVersion)
	}
	return tx.Commit()
}

// unreachable says what to check when PostgreSQL does not answer.
func unreachable(err error) error {
	return fmt.Errorf("cannot reach PostgreSQL (is it running, and does the URL name its host, port, user and database?): %w", err)
}

// redactURL hides the password of a database URL, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "postgres://…"
	}
	return u.Redacted()
}

// saveSeenPostgres is SaveSeen in one statement, the rows as arrays: a
// round trip per row would hold the revision counter's lock, which every
// write of every replica waits for, for seconds at 10,000 nodes.
func (s *Store) saveSeenPostgres(ctx context.Context, rs []record) error {
	ids, ips, lans := make([]string, len(rs)), make([]string, len(rs)), make([]string, len(rs))
	ports, nats, seen := make([]int64, len(rs)), make([]int64, len(rs)), make([]int64, len(rs))
	up := make([]bool, len(rs))
	for i, r := range rs {
		ids[i], ips[i], lans[i] = r.NodeID, r.PublicIP, r.LANIP
		ports[i], nats[i], seen[i], up[i] = int64(r.Port), int64(r.NATPort), r.LastSeen.Unix(), r.Up
	}
	return s.write(ctx, func(b bound, rev int64) error {
		_, err := b.exec(ctx, `UPDATE nodes AS n SET public_ip = v.public_ip, port = v.port, nat_port = v.nat_port,
			lan_ip = v.lan_ip, last_seen = v.last_seen, revision = ?,
			down_at = CASE WHEN v.up THEN 0 ELSE n.down_at END
			FROM unnest(?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::text[], ?::bigint[], ?::boolean[])
				AS v(node_id, public_ip, port, nat_port, lan_ip, last_seen, up)
			WHERE n.node_id = v.node_id AND n.last_seen <= v.last_seen`,
			rev, ids, ips, ports, nats, lans, seen, up)
		return err
	})
}

// pgConstraints are the unique constraints of nodes, by PostgreSQL's name
// for them, and the field each guards.
var pgConstraints = map[string]string{
	"nodes_pkey":              "node_id",
	"nodes_node_name_key":     "node_name",
	"nodes_name_lower":        "node_name",
	"nodes_node_key_key":      "node_key",
	"nodes_wg_public_key_key": "wg_public_key",
	"nodes_vpn_ip_key":        "vpn_ip",
}

// ErrStoreUnavailable says the store cannot be reached just now (PostgreSQL
// is down or restarting): the request may be tried again later.
var ErrStoreUnavailable = errors.New("the store is unavailable")

// unavailable marks the errors of a PostgreSQL that does not answer, or
// is shutting down or starting up, as ErrStoreUnavailable.
func (s *Store) unavailable(err error) error {
	if err == nil || s.dialect != dialectPostgres {
		return err
	}
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		// Class 08, connection exception; 57P, operator intervention
		// (admin_shutdown, crash_shutdown, cannot_connect_now).
		if !strings.HasPrefix(pe.Code, "08") && !strings.HasPrefix(pe.Code, "57P") {
			return err
		}
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), pgconn.SafeToRetry(err):
	default:
		return err
	}
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}

func pgConflict(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" { // unique_violation
		return err
	}
	if f, ok := pgConstraints[pe.ConstraintName]; ok {
		return &ErrConflict{Field: f}
	}
	return err
}
