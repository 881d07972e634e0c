package filewatch

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

type watcher struct {
	path     string
	opts     Options
	load     Loader
	rejected func(error)
	notify   *fsnotify.Watcher // nil: polling only
	warned   bool              // a watch could not be added; said once

	last   fingerprint // print of the last snapshot loaded (or tried)
	failed string      // the last load's error, "" when it succeeded
}

func newWatcher(path string, opts Options, load Loader, rejected func(error)) *watcher {
	w := &watcher{path: filepath.Clean(path), opts: opts, load: load, rejected: rejected}
	if opts.pollOnly {
		return w
	}
	n, err := fsnotify.NewWatcher()
	if err != nil {
		opts.Logger.Warn("cannot watch for file changes; polling only", "path", path, "poll", opts.Poll, "error", err)
		return w
	}
	w.notify = n
	return w
}

func (w *watcher) close() {
	if w.notify != nil {
		_ = w.notify.Close()
	}
}

func (w *watcher) run(ctx context.Context) {
	defer w.close()
	poll := time.NewTicker(w.opts.Poll)
	defer poll.Stop()
	settle := time.NewTimer(w.opts.Settle)
	settle.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.notify != nil {
		events, errs = w.notify.Events, w.notify.Errors
	}
	// settling: a change is waiting for Settle of quiet. expect: when the
	// change was found by polling, the print it must still have then
	// (inotify resets the timer itself on each event).
	settling := false
	var expect *fingerprint
	arm := func(print *fingerprint) {
		settling, expect = true, print
		settle.Reset(w.opts.Settle)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Chmod alone changes no content; ignoring it also avoids
			// waking up for access-time updates caused by our own reads.
			if ev.Op != fsnotify.Chmod {
				arm(nil)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Typically the event queue overflowed: events were lost.
			w.opts.Logger.Warn("file watch error; reading the path again", "path", w.path, "error", err)
			arm(nil)
		case <-poll.C:
			if settling {
				continue
			}
			w.updateWatches()
			s := read(w.path)
			if s.print != w.last || w.failed != "" {
				arm(&s.print)
			}
		case <-settle.C:
			w.updateWatches()
			s := read(w.path)
			if expect != nil && *expect != s.print {
				arm(&s.print) // still changing
				continue
			}
			settling, expect = false, nil
			if errors.Is(w.attempt(s), ErrChanged) {
				arm(nil)
			}
		}
	}
}

// attempt loads s unless it is what was loaded last; a failure is reported
// unless it is the same failure of the same content again (a retry).
func (w *watcher) attempt(s Snapshot) error {
	retry := s.print == w.last
	if retry && w.failed == "" {
		return nil // an unrelated entry of a watched directory changed
	}
	err := w.load(s)
	if errors.Is(err, ErrChanged) {
		return ErrChanged // not loaded: read it again later
	}
	w.last = s.print
	if err == nil {
		w.failed = ""
		return nil
	}
	if !retry || err.Error() != w.failed {
		w.failed = err.Error()
		w.rejected(err)
	}
	return err
}

// updateWatches watches the directories that can show a change of path now:
// its parent (the path replaced, deleted, created, a ConfigMap's ..data
// swapped), the directory of its symlink target, and when path is a
// directory, it and its visible subdirectories (inotify is not recursive).
// Watches of directories no longer wanted are dropped; deleted directories
// drop out by themselves.
func (w *watcher) updateWatches() {
	if w.notify == nil {
		return
	}
	want := wantedDirs(w.path)
	for _, d := range w.notify.WatchList() {
		if !want[d] {
			_ = w.notify.Remove(d)
		}
	}
	for d := range want {
		if err := w.notify.Add(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !w.warned {
			w.warned = true // e.g. the inotify watch limit: polling covers it
			w.opts.Logger.Warn("cannot watch a directory; its changes are seen by polling only", "dir", d, "poll", w.opts.Poll, "error", err)
		}
	}
}

func wantedDirs(path string) map[string]bool {
	want := map[string]bool{filepath.Dir(path): true}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return want
	}
	want[filepath.Dir(real)] = true
	if info, err := os.Stat(real); err != nil || !info.IsDir() {
		return want
	}
	_ = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil //nolint:nilerr // an unreadable entry is simply not watched; the poll still sees it
		}
		if p != real && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		want[p] = true
		return nil
	})
	return want
}
