// Package atomicfile replaces files whole: a reader, or a crash, sees the
// old contents or the new, never part of either.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with b, with exactly mode (not subject to the
// umask), through a temporary file beside it that is synced and then
// renamed over path.
func Write(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, there is nothing to remove
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	return err
}
