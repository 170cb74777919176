//go:build linux

package vm

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Image is the initramfs being made: a file tree for the machine's root.
type Image struct {
	entries map[string]entry // by path in the machine, without a leading /
}

type entry struct {
	mode    uint32 // with the file type bits
	data    []byte // a file's contents, or a symlink's target
	srcPath string // or a host file to read them from
}

const (
	typeDir  = 0o040000
	typeFile = 0o100000
	typeLink = 0o120000
)

// NewImage returns an empty image.
func NewImage() *Image { return &Image{entries: map[string]entry{}} }

// Dir adds a directory and its parents.
func (im *Image) Dir(name string) {
	name = strings.Trim(name, "/")
	for name != "." && name != "" {
		if _, ok := im.entries[name]; !ok {
			im.entries[name] = entry{mode: typeDir | 0o755}
		}
		name = path.Dir(name)
	}
}

// File adds data as the file name.
func (im *Image) File(name string, mode os.FileMode, data []byte) {
	name = strings.Trim(name, "/")
	im.Dir(path.Dir(name))
	im.entries[name] = entry{mode: typeFile | uint32(mode.Perm()), data: data}
}

// Symlink adds a symbolic link.
func (im *Image) Symlink(name, target string) {
	name = strings.Trim(name, "/")
	im.Dir(path.Dir(name))
	im.entries[name] = entry{mode: typeLink | 0o777, data: []byte(target)}
}

// HostFile adds the host's file src as name.
func (im *Image) HostFile(name, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	name = strings.Trim(name, "/")
	im.Dir(path.Dir(name))
	im.entries[name] = entry{mode: typeFile | uint32(fi.Mode().Perm()), srcPath: src}
	return nil
}

// libLine is a line of ldd's that names a library: "libc.so.6 =>
// /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2
// (0x...)".
var libLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// Program adds the host's program at path, at the same path, with the
// shared libraries ldd says it needs.
func (im *Image) Program(path string) error {
	if err := im.HostFile(path, path); err != nil {
		return err
	}
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return nil // static: "not a dynamic executable" exits 1
	}
	for _, line := range strings.Split(string(out), "\n") {
		if m := libLine.FindStringSubmatch(line); m != nil {
			real, err := filepath.EvalSymlinks(m[1])
			if err != nil {
				return err
			}
			if err := im.HostFile(m[1], real); err != nil {
				return err
			}
		}
	}
	return nil
}

// Write writes the image as a gzip-compressed newc cpio archive, the form
// the kernel unpacks into its root.
func (im *Image) Write(w io.Writer) error {
	zw := gzip.NewWriter(w)
	bw := bufio.NewWriter(zw)
	names := make([]string, 0, len(im.entries))
	for n := range im.entries {
		names = append(names, n)
	}
	slices.Sort(names) // parents before children
	for i, n := range names {
		e := im.entries[n]
		data := e.data
		if e.srcPath != "" {
			var err error
			if data, err = os.ReadFile(e.srcPath); err != nil {
				return err
			}
		}
		if err := writeCpio(bw, uint32(i+1), n, e.mode, data); err != nil {
			return err
		}
	}
	if err := writeCpio(bw, 0, "TRAILER!!!", 0, nil); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// writeCpio writes one newc entry: a 110-byte header of hex fields, the
// name with its NUL, the data, each padded to 4 bytes.
func writeCpio(w *bufio.Writer, ino uint32, name string, mode uint32, data []byte) error {
	nlink := 1
	if mode&0o170000 == typeDir {
		nlink = 2
	}
	fmt.Fprintf(w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	w.WriteString(name)
	w.WriteByte(0)
	pad(w, 110+len(name)+1)
	w.Write(data)
	pad(w, len(data))
	return nil
}

func pad(w *bufio.Writer, n int) {
	for ; n%4 != 0; n++ {
		w.WriteByte(0)
	}
}
