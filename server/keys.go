package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/wire-mesh/wire/api"
)

// KeyOptions are what a new join key is: how long it admits nodes, how
// many, and what it gives them.
type KeyOptions struct {
	Reusable bool      // any number of nodes, not just one
	Expires  time.Time // it admits nodes until then
	Tags     []string  // given to the nodes it admits
	// NodeTTL, if not zero, is how long the nodes it admits stay in the
	// mesh before they must authenticate again with a join key.
	NodeTTL time.Duration
}

// CreateKey stores a new join key for the servers with the given pin and
// returns it; only its secret's hash is kept.
func (s *Store) CreateKey(ctx context.Context, pin api.Pin, o KeyOptions) (api.JoinKey, error) {
	k := api.NewJoinKey(pin)
	_, err := s.conn().exec(ctx, `INSERT INTO join_keys (id, hash, reusable, expires_at, created_at, tags, node_ttl) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.ID, api.SecretHash(k.Secret), o.Reusable, o.Expires.Unix(), time.Now().Unix(), joinTags(o.Tags), int64(o.NodeTTL/time.Second))
	if err != nil {
		return api.JoinKey{}, fmt.Errorf("storing join key: %w", err)
	}
	return k, nil
}

// KeyInfo is a join key as `wire server key list` shows it: everything
// but its secret, of which the store holds only a hash.
type KeyInfo struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created_at"`
	Expires  time.Time `json:"expires_at"`
	Uses     int       `json:"uses"`
	Reusable bool      `json:"reusable"`
	Tags     []string  `json:"tags,omitempty"`
	// NodeTTL is KeyOptions.NodeTTL, in seconds (0: its nodes never
	// expire).
	NodeTTL int64 `json:"node_ttl,omitempty"`
}

// Key states, as KeyInfo.State gives them.
const (
	KeyValid   = "valid"
	KeyExpired = "expired"
	KeyUsed    = "used" // single-use, and spent
)

// State says whether the key admits a node at now, and if not, why.
func (k KeyInfo) State(now time.Time) string {
	switch {
	case !now.Before(k.Expires):
		return KeyExpired
	case !k.Reusable && k.Uses > 0:
		return KeyUsed
	}
	return KeyValid
}

// Keys returns every join key, the newest first.
func (s *Store) Keys(ctx context.Context) ([]KeyInfo, error) {
	rows, err := s.conn().rows(ctx, `SELECT id, created_at, expires_at, uses, reusable, tags, node_ttl FROM join_keys ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("reading join keys: %w", err)
	}
	defer rows.Close()
	var out []KeyInfo
	for rows.Next() {
		var k KeyInfo
		var created, expires int64
		var tags string
		if err := rows.Scan(&k.ID, &created, &expires, &k.Uses, &k.Reusable, &tags, &k.NodeTTL); err != nil {
			return nil, fmt.Errorf("reading join keys: %w", err)
		}
		k.Created, k.Expires, k.Tags = time.Unix(created, 0).UTC(), time.Unix(expires, 0).UTC(), splitTags(tags)
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeKey deletes the join key with the given id: from then on it
// admits no node, as if it had never been made. The nodes it enrolled
// stay. It returns ErrNotFound if there is no such key.
func (s *Store) RevokeKey(ctx context.Context, id string) error {
	var gone string
	err := s.conn().row(ctx, `DELETE FROM join_keys WHERE id = ? RETURNING id`, id).Scan(&gone)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("join key %q: %w", id, ErrNotFound)
	}
	return err
}
