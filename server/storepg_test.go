package server

import (
	"context"
	"testing"
	"time"

	"github.com/wire-mesh/wire/internal/pgtest"
)

// TestPostgresMigratesFromVersion3: a PostgreSQL store made before nodes
// had a stored down time (schema version 3) is brought to the current
// version with its nodes, and a down time can then be stored and read.
func TestPostgresMigratesFromVersion3(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Start(t).NewDB()
	s, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enrol(ctx, record{NodeID: "id-a", NodeName: "a", WGPublicKey: "wg-a", VPNIP: "10.99.0.5", NodeKey: "pin-a",
		Created: time.Now(), LastSeen: time.Now()}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER TABLE nodes DROP COLUMN down_at`, `UPDATE meta SET value = '3' WHERE key = 'schema_version'`} {
		if _, err := s.conn().exec(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	s.Close()

	s, err = OpenPostgres(ctx, url)
	if err != nil {
		t.Fatalf("opening a version 3 store: %v", err)
	}
	defer s.Close()
	if v, _ := s.Meta(ctx, "schema_version"); v != schemaVersion {
		t.Errorf("schema version %q after opening, want %q", v, schemaVersion)
	}
	down := time.Unix(time.Now().Unix(), 0)
	if err := s.SaveDown(ctx, "id-a", down); err != nil {
		t.Fatal(err)
	}
	nodes, err := s.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].VPNIP != "10.99.0.5" || !nodes[0].DownAt.Equal(down) {
		t.Errorf("after migrating: %+v, %v; want node a at 10.99.0.5, down at %v", nodes, err, down)
	}
}
