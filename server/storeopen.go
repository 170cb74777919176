package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrStoreAccess says the store could not be opened for writing for want
// of permission or of a writable file system. The store itself may be
// intact: moving it away, as for a damaged one, would lose a working mesh.
var ErrStoreAccess = errors.New("cannot write the store")

// OpenStoreAt opens the store that a --store value names: "" (or
// sqlite:PATH-TO-DIR) for the SQLite store in dir, a postgres:// URL for
// one in PostgreSQL.
func OpenStoreAt(ctx context.Context, dir, store string) (*Store, error) {
	switch {
	case store == "":
		return OpenStore(dir)
	case IsPostgres(store):
		return OpenPostgres(ctx, store)
	case strings.HasPrefix(store, "sqlite:"):
		return OpenStore(strings.TrimPrefix(store, "sqlite:"))
	}
	return nil, fmt.Errorf("--store %q: want a postgres:// URL, or sqlite:DIR for the SQLite store in a state dir", store)
}

// OpenStore opens the store in dir, creating it if dir holds none. A store
// that exists but cannot be read whole is an error, never a fresh start; so
// is one that is intact but that this process may not write.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, accessError(dir, dir, err)
	}
	path := filepath.Join(dir, StoreFile)
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := checkNoLeftovers(path); err != nil {
			return nil, err
		}
		if err := createStore(path); err != nil {
			return nil, accessError(dir, path, err)
		}
	case err != nil:
		return nil, accessError(dir, path, err)
	}
	if err := checkHeader(path); err != nil {
		return nil, openError(dir, path, err)
	}
	s, err := openDB(path)
	if err != nil {
		return nil, err
	}
	if err := s.open(); err != nil {
		s.db.Close()
		return nil, openError(dir, path, err)
	}
	return s, nil
}

// open checks that the file is an intact wire store that this process may
// write, and only then switches it to WAL mode: a foreign database is
// refused exactly as it was found.
func (s *Store) open() error {
	if err := s.check(); err != nil {
		return err
	}
	if _, err := s.db.Exec(`UPDATE meta SET value = value WHERE 0`); err != nil {
		return err // read-only: SQLite says so only when asked to write
	}
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %s: SQLite could not switch it to WAL", mode)
	}
	return s.migrate()
}

// migrate brings an older schema up to schemaVersion, one version per
// transaction, so that a crash leaves some whole version.
func (s *Store) migrate() error {
	for {
		var v string
		if err := s.db.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil {
			return err
		}
		step, ok := migrations[v]
		if !ok {
			return nil
		}
		if err := s.migrateFrom(v, step); err != nil {
			return fmt.Errorf("migrating the store from schema version %s: %w", v, err)
		}
	}
}

func (s *Store) migrateFrom(v, step string) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n, _ := strconv.Atoi(v)
	if _, err := tx.Exec(step+`; UPDATE meta SET value = ? WHERE key = 'schema_version'`, strconv.Itoa(n+1)); err != nil {
		return err
	}
	return tx.Commit()
}

// openError makes an error of opening a store say what to do: an access
// problem is not damage.
func openError(dir, path string, err error) error {
	if isAccess(err) {
		return accessError(dir, path, err)
	}
	return fmt.Errorf("store %s is damaged and was not touched: %w; restore it from a backup (with its %s-wal, if there is one), "+
		"or move %s, %s-wal and %s-shm away to start with no nodes", path, err, StoreFile, StoreFile, StoreFile, StoreFile)
}

// isAccess says whether err is for want of permission or of a writable
// file system, as the OS or SQLite reports it.
func isAccess(err error) bool {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return true
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary code, without the extended part
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_AUTH:
		return true
	}
	return false
}

func accessError(dir, path string, err error) error {
	why, readOnlyFS := whyNotWritable(dir, path)
	fix := fmt.Sprintf("run wire server as the user that owns %s (ls -ln %s), or give this user read and write access "+
		"to the directory and every file in it (chown -R, chmod u+rw)", dir, dir)
	if readOnlyFS {
		fix = "mount it read-write, or choose a state dir on a writable file system (--state-dir)"
	}
	return fmt.Errorf("%w %s: %s (%v). It is not damaged and was not changed: %s", ErrStoreAccess, path, why, err, fix)
}

// whyNotWritable names the first of the state dir and the store's files
// that this process may not write, and why.
func whyNotWritable(dir, path string) (why string, readOnlyFS bool) {
	const wOK = 2 // access(2)'s W_OK
	for _, p := range []string{dir, path, path + "-wal", path + "-shm"} {
		err := syscall.Access(p, wOK)
		switch {
		case errors.Is(err, syscall.EROFS):
			return p + " is on a read-only file system (under systemd, is it in ReadWritePaths?)", true
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Sprintf("uid %d may not write %s", os.Geteuid(), p), false
		}
	}
	return fmt.Sprintf("uid %d cannot use it", os.Geteuid()), false
}

// checkNoLeftovers refuses to create a store where a write-ahead log of an
// earlier one remains: SQLite would replay it onto the new store, bringing
// back old nodes or failing with "invalid page number".
func checkNoLeftovers(path string) error {
	var left []string
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Lstat(f); err == nil {
			left = append(left, filepath.Base(f))
		}
	}
	if len(left) == 0 {
		return nil
	}
	verb := "are"
	if len(left) == 1 {
		verb = "is"
	}
	return fmt.Errorf("store %s is missing, but %s of an earlier store %s still there, and SQLite would apply it to a new one. "+
		"To keep the mesh, put %s back; to start with no nodes, move %s, %s-wal and %s-shm away together",
		path, strings.Join(left, " and "), verb, StoreFile, StoreFile, StoreFile, StoreFile)
}

// openDB opens the database without changing it: WAL mode is set by open,
// once the file is known to be a wire store.
func openDB(path string) (*Store, error) {
	q := url.Values{"_txlock": {"immediate"}}
	for _, p := range []string{"busy_timeout(10000)", "synchronous(FULL)"} {
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
	_, err = s.db.Exec(`PRAGMA journal_mode = WAL;`+schemaSQLite+`INSERT INTO meta VALUES ('schema_version', ?)`, schemaVersion)
	if err == nil {
		err = os.Chmod(tmp, 0o600) // node keys and key hashes: the WAL inherits this
	}
	if cerr := s.Close(); err == nil {
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

// checkHeader looks at the file before SQLite opens it, which would quietly
// turn an empty (truncated) file into a new database.
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

// check reads the schema version first, so that another program's
// database is refused before anything else, then runs SQLite's full
// integrity check: unlike quick_check it also compares every index with
// its table, and a wrong node_name index would make `node remove` miss a
// row.
func (s *Store) check() error {
	var v string
	err := s.db.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	if err != nil {
		if isAccess(err) {
			return err
		}
		return fmt.Errorf("no wire schema (truncated or not a wire store?): %w", err)
	}
	if _, old := migrations[v]; v != schemaVersion && !old {
		return fmt.Errorf("schema version %s, this wire understands %s", v, schemaVersion)
	}
	rows, err := s.db.Query(`PRAGMA integrity_check(5)`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check: %s", strings.Join(problems, "; "))
	}
	return nil
}
