package server

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// storeWithNodes makes a store in a new dir holding n nodes, closed.
func storeWithNodes(t testing.TB, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		rec := record{NodeID: fmt.Sprintf("id%05d", i), NodeName: fmt.Sprintf("node%05d", i), NodeKey: fmt.Sprintf("pin%05d", i),
			WGPublicKey: fmt.Sprintf("wg%05d", i), VPNIP: fmt.Sprintf("10.99.%d.%d", i/250, i%250+1), Created: now, LastSeen: now}
		if _, err := s.Enrol(context.Background(), rec, nil, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rawDB opens a database file with none of the store's settings.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A damaged index passes quick_check, which does not compare indexes with
// their tables; the store must still be refused.
func TestDamagedIndexRefused(t *testing.T) {
	dir := storeWithNodes(t, 20)
	path := filepath.Join(dir, StoreFile)
	var root, pageSize int64
	db := rawDB(t, path)
	db.QueryRow(`SELECT rootpage FROM sqlite_master WHERE type = 'index' AND sql IS NULL AND name LIKE 'sqlite_autoindex_nodes_%' ORDER BY name LIMIT 1 OFFSET 1`).Scan(&root)
	db.QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	db.Close()
	b, _ := os.ReadFile(path)
	page := b[(root-1)*pageSize : root*pageSize]
	// The last name in the node_name index becomes one that sorts after it
	// still: the b-tree stays well-formed, the index no longer matches.
	i := bytes.LastIndex(page, []byte("node00019"))
	if i < 0 {
		t.Fatalf("node_name index (page %d) does not hold node00019", root)
	}
	page[i+len("node00019")-1] = '~'
	os.WriteFile(path, b, 0o600)

	db = rawDB(t, path)
	var quick string
	db.QueryRow(`PRAGMA quick_check`).Scan(&quick)
	db.Close()
	if quick != "ok" {
		t.Fatalf("quick_check = %q: the damage is not the kind it misses", quick)
	}
	_, err := OpenStore(dir)
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "index") {
		t.Fatalf("OpenStore with a damaged index: err = %v, want it refused as damaged", err)
	}
}

// Random one-byte corruptions: whatever the store accepts must pass
// SQLite's full integrity check, and what it refuses it leaves unchanged.
func TestRandomCorruption(t *testing.T) {
	clean := storeWithNodes(t, 300)
	orig, err := os.ReadFile(filepath.Join(clean, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for trial := range 100 {
		dir := t.TempDir()
		path := filepath.Join(dir, StoreFile)
		b := bytes.Clone(orig)
		b[100+rng.IntN(len(b)-100)] ^= byte(1 + rng.IntN(255)) // past the header, which checkHeader guards
		os.WriteFile(path, b, 0o600)
		s, err := OpenStore(dir)
		if err != nil {
			if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
				t.Errorf("trial %d: a refused store was changed", trial)
			}
			continue
		}
		s.Close()
		accepted++
		db := rawDB(t, path)
		var res string
		if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
			t.Errorf("trial %d: the store accepted a database whose integrity_check says %q, %v", trial, res, err)
		}
		db.Close()
	}
	t.Logf("%d of 100 one-byte corruptions accepted, each passing integrity_check", accepted)
}

// Moving wire.db away but not its write-ahead log would let SQLite replay
// that log onto a new store; the store refuses, naming all three files.
func TestLeftoverWALRefused(t *testing.T) {
	for _, left := range [][]string{{"-wal"}, {"-shm"}, {"-wal", "-shm"}} {
		t.Run(strings.Join(left, ""), func(t *testing.T) {
			dir := t.TempDir()
			for _, suffix := range left {
				os.WriteFile(filepath.Join(dir, StoreFile+suffix), []byte("leftover"), 0o600)
			}
			_, err := OpenStore(dir)
			for _, want := range []string{"wire.db,", "wire.db-wal", "wire.db-shm", "put wire.db back"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want it to say %q", err, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, StoreFile)); err == nil {
				t.Error("a new store was created beside the leftovers")
			}
		})
	}
}

// After a clean close, wire.db alone holds everything: the WAL was
// checkpointed into it, even while another process (an admin command) had
// the database open, when SQLite would not checkpoint on its own.
func TestCloseCheckpoints(t *testing.T) {
	dir := storeWithNodes(t, 0)
	path := filepath.Join(dir, StoreFile)
	other := rawDB(t, path)
	var n int
	if err := other.QueryRow(`SELECT count(*) FROM nodes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 50 {
		rec := record{NodeID: fmt.Sprint("id", i), NodeName: fmt.Sprint("n", i), WGPublicKey: fmt.Sprint("wg", i), VPNIP: fmt.Sprintf("10.99.0.%d", i+1), Created: now, LastSeen: now}
		if _, err := s.Enrol(context.Background(), rec, nil, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("wire.db-wal holds %d bytes after a clean close", fi.Size())
	}
	moved := t.TempDir()
	b, _ := os.ReadFile(path)
	os.WriteFile(filepath.Join(moved, StoreFile), b, 0o600)
	s, err = OpenStore(moved)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if recs, _ := s.Nodes(context.Background()); len(recs) != 50 {
		t.Errorf("wire.db alone holds %d nodes, want 50", len(recs))
	}
}

// Another program's SQLite database is refused exactly as it was found:
// not switched to WAL, not given a journal.
func TestForeignDatabaseUntouched(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StoreFile)
	db := rawDB(t, path)
	if _, err := db.Exec(`PRAGMA journal_mode = DELETE; CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO photos (name) VALUES ('cat')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(path)
	_, err := OpenStore(dir)
	if err == nil || !strings.Contains(err.Error(), "not a wire store") {
		t.Fatalf("err = %v, want a refusal that says it is not a wire store", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("the foreign database was changed (file format bytes %v → %v)", before[18:20], after[18:20])
	}
	for _, f := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(path + f); err == nil {
			t.Errorf("%s%s was created", StoreFile, f)
		}
	}
}

// Names are unique regardless of case, and so is removing one.
func TestRemoveNodeAnyCase(t *testing.T) {
	dir := storeWithNodes(t, 2)
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.RemoveNode(context.Background(), "NODE00001")
	if err != nil || got != "node00001" {
		t.Fatalf("RemoveNode(NODE00001) = %q, %v; want node00001 removed", got, err)
	}
	if recs, _ := s.Nodes(context.Background()); len(recs) != 1 || recs[0].NodeName != "node00000" {
		t.Errorf("left: %+v", recs)
	}
	if _, err := s.RemoveNode(context.Background(), "node00001"); err == nil {
		t.Error("removing it again succeeded")
	}
}

// What opening (and so checking) a store costs, for the README.
func BenchmarkOpenStore10k(b *testing.B) {
	dir := storeWithNodes(b, 10000)
	for b.Loop() {
		s, err := OpenStore(dir)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// TestMigrateFromVersion1 opens a store of schema version 1 (before tags):
// it is brought to the current version with its nodes and keys intact.
func TestMigrateFromVersion1(t *testing.T) {
	dir := storeWithNodes(t, 3)
	db := rawDB(t, filepath.Join(dir, StoreFile))
	for _, q := range []string{
		`ALTER TABLE nodes DROP COLUMN expires_at`, `ALTER TABLE join_keys DROP COLUMN node_ttl`,
		`ALTER TABLE nodes DROP COLUMN down_at`,
		`DROP INDEX nodes_revision`, `ALTER TABLE nodes DROP COLUMN revision`,
		`DROP TABLE removals`, `DROP TABLE revision`,
		`ALTER TABLE nodes DROP COLUMN tags`, `ALTER TABLE join_keys DROP COLUMN tags`,
		`UPDATE meta SET value = '1' WHERE key = 'schema_version'`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.Meta(context.Background(), "schema_version"); v != schemaVersion {
		t.Errorf("schema version %q after opening, want %q", v, schemaVersion)
	}
	if _, err := s.SetNodeTags(context.Background(), "NODE00001", []string{"tag:a"}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Nodes(context.Background())
	if err != nil || len(recs) != 3 {
		t.Fatalf("nodes after migrating: %d, %v; want 3", len(recs), err)
	}
	if got := recs[1].Tags; len(got) != 1 || got[0] != "tag:a" {
		t.Errorf("node00001's tags %q, want [tag:a]", got)
	}
}

// A stored down time survives a heartbeat's facts written by a server
// that did not see the node come back, and is cleared by those of one
// that did (Up), on SQLite as on PostgreSQL (TestReplicaChangeReachesLongPoll).
func TestDownTimeClearedOnlyByUp(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(storeWithNodes(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	downAt := func() time.Time {
		t.Helper()
		nodes, err := s.Nodes(ctx)
		if err != nil || len(nodes) != 1 {
			t.Fatalf("nodes: %v, %v", nodes, err)
		}
		return nodes[0].DownAt
	}
	down := time.Unix(time.Now().Unix(), 0)
	if err := s.SaveDown(ctx, "id00000", down); err != nil {
		t.Fatal(err)
	}
	seen := record{NodeID: "id00000", LastSeen: down.Add(time.Second), PublicIP: "198.51.100.7"}
	if err := s.SaveSeen(ctx, []record{seen}); err != nil {
		t.Fatal(err)
	}
	if got := downAt(); !got.Equal(down) {
		t.Errorf("after another server's heartbeat facts: down at %v, want %v kept", got, down)
	}
	seen.Up, seen.LastSeen = true, seen.LastSeen.Add(time.Second)
	if err := s.SaveSeen(ctx, []record{seen}); err != nil {
		t.Fatal(err)
	}
	if got := downAt(); !got.IsZero() {
		t.Errorf("after the heartbeat of a node back up: down at %v, want none", got)
	}
}
