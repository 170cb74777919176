package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MigrateReport says what Migrate copied.
type MigrateReport struct {
	Nodes, Keys, Settings int
}

// Migrate copies a mesh from one store to another, empty, one (SQLite to
// PostgreSQL, or back): every node with its address, keys and tags, every
// join key with its uses, and the settings (subnet, policy). Nodes keep
// their identities, so none has to enrol again. pin is the TLS key pin of
// the servers that will serve to, recorded as a shared store's servers
// expect. It reads to back, and fails if anything differs.
func Migrate(ctx context.Context, from, to *Store, pin string) (MigrateReport, error) {
	var rep MigrateReport
	if n, err := to.count(ctx); err != nil || n > 0 {
		if err == nil {
			err = fmt.Errorf("the store %s already holds %d nodes or keys: migrate into an empty one", to.Path(), n)
		}
		return rep, err
	}
	nodes, err := from.Nodes(ctx)
	if err != nil {
		return rep, fmt.Errorf("reading nodes from %s: %w", from.Path(), err)
	}
	keys, err := from.keys(ctx)
	if err != nil {
		return rep, fmt.Errorf("reading join keys from %s: %w", from.Path(), err)
	}
	meta, err := from.settings(ctx)
	if err != nil {
		return rep, fmt.Errorf("reading settings from %s: %w", from.Path(), err)
	}
	if pin != "" {
		meta["server_pin"] = pin
	}
	err = to.write(ctx, func(b bound, rev int64) error {
		for k, v := range meta {
			if _, err := b.exec(ctx, `INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return err
			}
		}
		for _, r := range nodes {
			var nodeKey any
			if r.NodeKey != "" {
				nodeKey = r.NodeKey
			}
			if _, err := b.exec(ctx, `INSERT INTO nodes (node_id, node_name, node_key, wg_public_key, vpn_ip,
				public_ip, port, nat_port, lan_ip, created_at, last_seen, tags, revision, down_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.NodeID, r.NodeName, nodeKey, r.WGPublicKey, r.VPNIP, r.PublicIP, r.Port, r.NATPort, r.LANIP,
				r.Created.Unix(), r.LastSeen.Unix(), joinTags(r.Tags), rev, unixOrZero(r.DownAt), unixOrZero(r.ExpiresAt)); err != nil {
				return fmt.Errorf("node %s: %w", r.NodeName, to.conflictError(err))
			}
		}
		for _, k := range keys {
			if _, err := b.exec(ctx, `INSERT INTO join_keys (id, hash, reusable, expires_at, created_at, uses, tags, node_ttl) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				k.id, k.hash, k.reusable, k.expires, k.created, k.uses, k.tags, k.nodeTTL); err != nil {
				return fmt.Errorf("join key %s: %w", k.id, err)
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("writing %s (nothing was written): %w", to.Path(), err)
	}
	if err := verifyCopy(ctx, to, nodes, keys); err != nil {
		return rep, err
	}
	return MigrateReport{Nodes: len(nodes), Keys: len(keys), Settings: len(meta)}, nil
}

// verifyCopy reads the nodes and keys back from to.
func verifyCopy(ctx context.Context, to *Store, nodes []record, keys []joinKeyRow) error {
	got, err := to.Nodes(ctx)
	if err != nil {
		return err
	}
	gotKeys, err := to.keys(ctx)
	if err != nil {
		return err
	}
	same := func(a, b record) bool {
		return a.NodeID == b.NodeID && a.NodeName == b.NodeName && a.NodeKey == b.NodeKey && a.WGPublicKey == b.WGPublicKey &&
			a.VPNIP == b.VPNIP && a.PublicIP == b.PublicIP && a.Port == b.Port && a.NATPort == b.NATPort && a.LANIP == b.LANIP &&
			a.Created.Equal(b.Created) && a.LastSeen.Equal(b.LastSeen) && slices.Equal(a.Tags, b.Tags) && a.DownAt.Equal(b.DownAt) && a.ExpiresAt.Equal(b.ExpiresAt)
	}
	// Each database orders text by its own collation: compare by id.
	byID := func(a, b record) int { return strings.Compare(a.NodeID, b.NodeID) }
	keyID := func(a, b joinKeyRow) int { return strings.Compare(a.id, b.id) }
	nodes, keys = slices.Clone(nodes), slices.Clone(keys)
	slices.SortFunc(got, byID)
	slices.SortFunc(nodes, byID)
	slices.SortFunc(gotKeys, keyID)
	slices.SortFunc(keys, keyID)
	if !slices.EqualFunc(got, nodes, same) || !slices.EqualFunc(gotKeys, keys, joinKeyRow.equal) {
		return errors.New("the copy read back differs from the original: do not use it")
	}
	return nil
}

// joinKeyRow is a join key as stored.
type joinKeyRow struct {
	id, tags                        string
	hash                            []byte
	reusable                        bool
	expires, created, uses, nodeTTL int64
}

func (k joinKeyRow) equal(o joinKeyRow) bool {
	return k.id == o.id && k.tags == o.tags && string(k.hash) == string(o.hash) && k.reusable == o.reusable &&
		k.expires == o.expires && k.created == o.created && k.uses == o.uses && k.nodeTTL == o.nodeTTL
}

func (s *Store) keys(ctx context.Context) ([]joinKeyRow, error) {
	rows, err := s.conn().rows(ctx, `SELECT id, hash, reusable, expires_at, created_at, uses, tags, node_ttl FROM join_keys ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []joinKeyRow
	for rows.Next() {
		var k joinKeyRow
		if err := rows.Scan(&k.id, &k.hash, &k.reusable, &k.expires, &k.created, &k.uses, &k.tags, &k.nodeTTL); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// settings are the meta rows a migration copies: all but the schema's
// version, which each store keeps for itself.
func (s *Store) settings(ctx context.Context) (map[string]string, error) {
	rows, err := s.conn().rows(ctx, `SELECT key, value FROM meta WHERE key <> 'schema_version'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]string)
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// count is how many nodes and join keys the store holds.
func (s *Store) count(ctx context.Context) (int, error) {
	var n int
	err := s.conn().row(ctx, `SELECT (SELECT COUNT(*) FROM nodes) + (SELECT COUNT(*) FROM join_keys)`).Scan(&n)
	return n, err
}
