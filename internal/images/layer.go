package images

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// layerBuilder collects the entries of one image layer and writes them as
// a reproducible tar: paths sorted, every mtime the same fixed time, owners
// numeric (no user names), modes given explicitly rather than taken from
// the build machine (whose umask may differ). Parent directories are added
// as root-owned 0755 unless given otherwise.
type layerBuilder struct {
	mtime   time.Time
	entries map[string]entry
}

type entry struct {
	typ      byte // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	mode     int64
	uid, gid int
	src      string // file on the build machine (TypeReg)
	target   string // TypeSymlink
}

func newLayer(mtime time.Time) *layerBuilder {
	return &layerBuilder{mtime: mtime.UTC(), entries: map[string]entry{}}
}

// clean turns an absolute image path into a tar name ("usr/local/bin/x").
func clean(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("image path %q is not absolute", p)
	}
	c := strings.TrimPrefix(path.Clean(p), "/")
	if c == "" {
		return "", fmt.Errorf("image path %q is the root", p)
	}
	return c, nil
}

func (b *layerBuilder) put(p string, e entry) error {
	name, err := clean(p)
	if err != nil {
		return err
	}
	if old, ok := b.entries[name]; ok {
		if old == e {
			return nil
		}
		// An implicit parent directory may be given its real owner/mode.
		if old.typ == tar.TypeDir && e.typ == tar.TypeDir {
			b.entries[name] = e
			return nil
		}
		return fmt.Errorf("image path /%s added twice, differently (%+v, %+v)", name, old, e)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if old, ok := b.entries[dir]; ok {
			if old.typ != tar.TypeDir {
				return fmt.Errorf("image path /%s: parent /%s is not a directory", name, dir)
			}
			continue
		}
		b.entries[dir] = entry{typ: tar.TypeDir, mode: 0o755}
	}
	b.entries[name] = e
	return nil
}

// Dir adds a directory.
func (b *layerBuilder) Dir(p string, mode int64, uid, gid int) error {
	return b.put(p, entry{typ: tar.TypeDir, mode: mode, uid: uid, gid: gid})
}

// File adds the build machine's file src (symlinks followed) at p, root
// owned, 0755 if src is executable by anyone, else 0644.
func (b *layerBuilder) File(p, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	mode := int64(0o644)
	if st.Mode().Perm()&0o111 != 0 {
		mode = 0o755
	}
	return b.put(p, entry{typ: tar.TypeReg, mode: mode, src: src})
}

// Symlink adds a symbolic link p -> target.
func (b *layerBuilder) Symlink(p, target string) error {
	return b.put(p, entry{typ: tar.TypeSymlink, mode: 0o777, target: target})
}

// Has says whether p is in the layer.
func (b *layerBuilder) Has(p string) bool {
	name, err := clean(p)
	if err != nil {
		return false
	}
	_, ok := b.entries[name]
	return ok
}

// Paths lists the layer's paths ("/usr/local/bin/horizon"), sorted.
func (b *layerBuilder) Paths() []string {
	out := make([]string, 0, len(b.entries))
	for name := range b.entries {
		out = append(out, "/"+name)
	}
	sort.Strings(out)
	return out
}

// WriteTar writes the layer as a tar stream.
func (b *layerBuilder) WriteTar(w io.Writer) error {
	names := make([]string, 0, len(b.entries))
	for name := range b.entries {
		names = append(names, name)
	}
	// Sorted by name, so a directory comes before what it holds.
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, name := range names {
		e := b.entries[name]
		h := &tar.Header{
			Typeflag: e.typ, Name: name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: b.mtime, Format: tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.target
		case tar.TypeReg:
			st, err := os.Stat(e.src)
			if err != nil {
				return err
			}
			h.Size = st.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("layer entry /%s: %w", name, err)
		}
		if e.typ == tar.TypeReg {
			if err := copyFile(tw, e.src, h.Size); err != nil {
				return fmt.Errorf("layer entry /%s: %w", name, err)
			}
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size+1))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s changed size while being copied (%d bytes, expected %d)", src, n, size)
	}
	return nil
}

// Layer writes the layer gzip-compressed (default level, no name or time in
// the gzip header: the same entries give the same bytes) into dir and
// returns it. Compressing once, to a file, keeps Envoy's ~100 MB out of
// memory and out of a second compression when the image is written.
func (b *layerBuilder) Layer(dir, name string) (v1.Layer, error) {
	f, err := os.CreateTemp(dir, name+"-*.tar.gz")
	if err != nil {
		return nil, err
	}
	zw := gzip.NewWriter(f)
	werr := b.WriteTar(zw)
	if cerr := zw.Close(); werr == nil {
		werr = cerr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, werr
	}
	return tarball.LayerFromFile(f.Name())
}
