package images

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CheckStatic fails unless the ELF executable at path is statically linked:
// no program interpreter and no DT_NEEDED libraries (what `ldd` reports as
// "not a dynamic executable").
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if interp, err := interpreter(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	} else if interp != "" {
		return fmt.Errorf("%s is dynamically linked (interpreter %s); build it with CGO_ENABLED=0", path, interp)
	}
	needed, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(needed) > 0 {
		return fmt.Errorf("%s needs shared libraries %v; build it with CGO_ENABLED=0", path, needed)
	}
	return nil
}

// Arch is the OCI architecture of an ELF file ("amd64", "arm64").
func Arch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("%s: unsupported machine %v", path, f.Machine)
}

func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("reading PT_INTERP: %w", err)
		}
		return strings.TrimRight(string(b), "\x00"), nil
	}
	return "", nil
}

// Deps are the files the dynamic loader maps to run some ELF objects.
type Deps struct {
	// Interpreter is the program interpreter named by the executables'
	// PT_INTERP (e.g. /lib64/ld-linux-x86-64.so.2), as named.
	Interpreter string
	// Libs are the shared libraries, the closure of DT_NEEDED, each at the
	// path the loader of the build machine finds it (as `ldd` shows it),
	// sorted; the interpreter is not repeated among them.
	Libs []string
}

// Resolver finds shared libraries as glibc's loader does on the build
// machine: DT_RUNPATH (or DT_RPATH) of the object, then the directories of
// /etc/ld.so.conf (what ld.so.cache holds), then the default directories.
// LD_LIBRARY_PATH is ignored on purpose: the image must not depend on the
// builder's environment.
type Resolver struct {
	Dirs []string // searched after the object's own run path
}

// DefaultDirs are glibc's built-in search directories on Debian (multiarch
// first) and on lib64 distributions.
var DefaultDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// NewResolver reads /etc/ld.so.conf (with its includes) and appends the
// default directories.
func NewResolver() *Resolver {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	readLdSoConf("/etc/ld.so.conf", add, 0)
	for _, d := range DefaultDirs {
		add(d)
	}
	return &Resolver{Dirs: dirs}
}

func readLdSoConf(path string, add func(string), depth int) {
	if depth > 8 {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case fields[0] == "include":
			for _, pat := range fields[1:] {
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(filepath.Dir(path), pat)
				}
				matches, _ := filepath.Glob(pat)
				for _, m := range matches { // sorted by Glob
					readLdSoConf(m, add, depth+1)
				}
			}
		default:
			for _, d := range fields {
				if filepath.IsAbs(d) {
					add(filepath.Clean(d))
				}
			}
		}
	}
}

// Resolve returns the interpreter and the shared libraries that the given
// ELF objects (executables, or dlopen'ed modules) need, transitively.
// Executables must agree on their interpreter.
func (r *Resolver) Resolve(objects ...string) (Deps, error) {
	var d Deps
	var interpSoname string
	found := map[string]bool{}
	queue := append([]string(nil), objects...)
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		f, err := elf.Open(obj)
		if err != nil {
			return Deps{}, fmt.Errorf("%s: %w", obj, err)
		}
		interp, err := interpreter(f)
		if err == nil && interp != "" && !found[obj] { // an object of the list, not a library
			switch {
			case d.Interpreter == "":
				d.Interpreter = interp
				interpSoname, err = soname(interp)
			case d.Interpreter != interp:
				err = fmt.Errorf("interpreter %s, while another object uses %s", interp, d.Interpreter)
			}
		}
		var needed, runpath []string
		if err == nil {
			needed, err = f.ImportedLibraries()
			if errors.Is(err, elf.ErrNoSymbols) {
				err = nil
			}
		}
		if err == nil {
			runpath, err = f.DynString(elf.DT_RUNPATH)
			if err == nil && len(runpath) == 0 {
				runpath, err = f.DynString(elf.DT_RPATH)
			}
		}
		class, machine := f.Class, f.Machine
		f.Close()
		if err != nil {
			return Deps{}, fmt.Errorf("%s: %w", obj, err)
		}
		for _, lib := range needed {
			if lib == interpSoname || (d.Interpreter != "" && lib == filepath.Base(d.Interpreter)) {
				continue // the loader is already there (ldd shows it once, by its PT_INTERP name)
			}
			p, err := r.find(lib, obj, runpath, class, machine)
			if err != nil {
				return Deps{}, fmt.Errorf("%s (needed by %s): %w", lib, obj, err)
			}
			if !found[p] {
				found[p] = true
				d.Libs = append(d.Libs, p)
				queue = append(queue, p)
			}
		}
	}
	sort.Strings(d.Libs)
	return d, nil
}

func soname(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(s) == 0 {
		return filepath.Base(path), nil
	}
	return s[0], nil
}

func (r *Resolver) find(lib, from string, runpath []string, class elf.Class, machine elf.Machine) (string, error) {
	if strings.Contains(lib, "/") {
		return lib, nil
	}
	var dirs []string
	for _, rp := range runpath {
		for _, d := range strings.Split(rp, ":") {
			d = strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(from))
			d = strings.ReplaceAll(d, "${ORIGIN}", filepath.Dir(from))
			if d != "" {
				dirs = append(dirs, d)
			}
		}
	}
	dirs = append(dirs, r.Dirs...)
	for _, d := range dirs {
		p := filepath.Join(d, lib)
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		ok := f.Class == class && f.Machine == machine
		f.Close()
		if ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %v", dirs)
}
