package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A damaged store must stop the server with a clear message, never let it
// start empty, and must be left as it was for the operator to recover.
func TestDamagedStoreRefused(t *testing.T) {
	tests := []struct {
		name   string
		damage func(path string) error
	}{
		{"truncated to zero", func(p string) error { return os.Truncate(p, 0) }},
		{"truncated halfway", func(p string) error {
			fi, _ := os.Stat(p)
			return os.Truncate(p, fi.Size()/2)
		}},
		{"garbage", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("not a database ", 500)), 0o600) }},
		{"scribbled pages", func(p string) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte(strings.Repeat("\xff", 3*4096)), 4096) // pages 2 to 4
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				s.db.Exec(`INSERT INTO meta VALUES (?, ?)`, "k"+strings.Repeat("x", i), strings.Repeat("v", 100))
			}
			s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			s.Close()
			path := filepath.Join(dir, StoreFile)
			if err := tt.damage(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			_, err = OpenStore(dir)
			if err == nil || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("OpenStore on a damaged store: err = %v, want a clear refusal", err)
			}
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Errorf("the damaged store was modified")
			}
		})
	}
}

func TestNewStoreIsPrivate(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, StoreFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("store mode = %v, %v; want 0600", fi.Mode(), err)
	}
}
