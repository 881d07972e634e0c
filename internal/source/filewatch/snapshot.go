package filewatch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Snapshot is the watched path as read once it was quiet.
type Snapshot struct {
	Path string
	// Dir says Path is a directory; its files are left to the loader.
	Dir bool
	// Data is the content of Path when it is a file (symlinks followed).
	Data []byte
	// Err says why Path could not be read: deleted, a dangling symlink,
	// no permission.
	Err error

	// print identifies the content: the file's bytes, or for a directory
	// every file's name and bytes (and read errors), so that a change is
	// seen even when sizes and modification times stay the same.
	print fingerprint
}

// ErrChanged is what a Loader returns when the path changed while it was
// loading (see Snapshot.Changed): nothing is applied or reported, and the
// path is read again once it is quiet.
var ErrChanged = errors.New("changed while loading")

// Changed reads the path again and says whether it differs from s. A
// loader that reads the files itself (rather than Data) calls it after
// reading, so that what it read is what was settled.
func (s Snapshot) Changed() bool {
	return read(s.Path).print != s.print
}

// fingerprint is a SHA-256 of what a snapshot read.
type fingerprint = [sha256.Size]byte

func read(path string) Snapshot {
	s := Snapshot{Path: path}
	h := sha256.New()
	info, err := os.Stat(path)
	switch {
	case err != nil:
		s.Err = err
		fmt.Fprintf(h, "unreadable %v\n", err)
	case info.IsDir():
		s.Dir = true
		hashTree(h, path)
	default:
		s.Data, s.Err = os.ReadFile(path)
		hashEntry(h, "", s.Data, s.Err)
	}
	h.Sum(s.print[:0])
	return s
}

// hashTree hashes every file under dir except hidden entries, which the
// manifest loader skips too (.git, editor files, a ConfigMap's ..data and
// ..TIMESTAMP copies: the visible symlinks into them are hashed instead).
func hashTree(h hash.Hash, dir string) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		hashEntry(h, dir, nil, err)
		return
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err != nil {
			hashEntry(h, rel, nil, err)
			return nil
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			data, err := os.ReadFile(p)
			hashEntry(h, rel, data, err)
		}
		return nil
	})
}

// hashEntry writes one file unambiguously: name, then length and bytes or
// the read error (so a dangling symlink that is removed is a change).
func hashEntry(h hash.Hash, name string, data []byte, err error) {
	if err != nil {
		fmt.Fprintf(h, "%q error %v\n", name, err)
		return
	}
	fmt.Fprintf(h, "%q %d\n", name, len(data))
	h.Write(data)
}
