package server

import (
	"context"
	"testing"
	"time"

	"github.com/wire-mesh/wire/internal/pgtest"
)

// A PostgreSQL store made by an older wire (they began at schema version
// 3; 4 added the down time, 5 the expiry) is brought up to this version
// when a server opens it, nodes kept, and the new columns work.
func TestPostgresMigratesFromOlderVersions(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Start(t)
	older := map[string][]string{
		"3": {`ALTER TABLE nodes DROP COLUMN down_at`, `ALTER TABLE nodes DROP COLUMN expires_at`, `ALTER TABLE join_keys DROP COLUMN node_ttl`},
		"4": {`ALTER TABLE nodes DROP COLUMN expires_at`, `ALTER TABLE join_keys DROP COLUMN node_ttl`},
	}
	for v, downgrade := range older {
		t.Run("version "+v, func(t *testing.T) {
			url := pg.NewDB()
			s, err := OpenPostgres(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Enrol(ctx, record{NodeID: "id-a", NodeName: "a", WGPublicKey: "wg-a", VPNIP: "10.99.0.5", NodeKey: "pin-a",
				Created: time.Now(), LastSeen: time.Now()}, nil, time.Now()); err != nil {
				t.Fatal(err)
			}
			for _, q := range append(downgrade, `UPDATE meta SET value = '`+v+`' WHERE key = 'schema_version'`) {
				if _, err := s.conn().exec(ctx, q); err != nil {
					t.Fatal(q, err)
				}
			}
			s.Close()

			s, err = OpenPostgres(ctx, url)
			if err != nil {
				t.Fatalf("opening a version %s store: %v", v, err)
			}
			defer s.Close()
			if got, _ := s.Meta(ctx, "schema_version"); got != schemaVersion {
				t.Errorf("schema version %q after opening, want %q", got, schemaVersion)
			}
			down := time.Unix(time.Now().Unix(), 0)
			if err := s.SaveDown(ctx, "id-a", down); err != nil {
				t.Fatal(err)
			}
			expires := down.Add(time.Hour)
			if _, err := s.ExpireNode(ctx, "A", expires); err != nil {
				t.Fatal(err)
			}
			nodes, err := s.Nodes(ctx)
			if err != nil || len(nodes) != 1 || nodes[0].VPNIP != "10.99.0.5" || !nodes[0].DownAt.Equal(down) || !nodes[0].ExpiresAt.Equal(expires) {
				t.Errorf("after migrating: %+v, %v; want node a at 10.99.0.5, down at %v, expiring at %v", nodes, err, down, expires)
			}
		})
	}
}
