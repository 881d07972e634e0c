// Package filewatch follows a file or a directory that people edit while
// Horizon runs (a meshNetworks file, cluster manifests) and hands it to a
// loader once it has stopped changing. Both file watchers of Horizon use it,
// so they follow the same rules:
//
//   - The directory is watched, not the file's inode (inotify through
//     fsnotify): editors and copies replace files rather than rewrite them,
//     and a mounted ConfigMap — the normal case — never changes its visible
//     file: `meshNetworks -> ..data/meshNetworks` stays, while the kubelet
//     swaps the `..data` symlink to a new `..2026_...` directory atomically.
//     Symlinks are resolved again after every change, and the directory of
//     their target is watched too.
//   - A change is read once no event has arrived for Settle (default
//     150ms). Then the loader must parse and validate the whole content and
//     apply nothing when it fails. Reading the same bytes twice does not
//     make a file complete: a writer that pauses leaves a stable prefix.
//   - Every Poll the content is read again as a safety net (lost events,
//     file systems without inotify); a difference found that way must then
//     read the same after Settle before it is loaded.
//   - A failed load is reported once and retried on every later event and
//     poll, so a file that becomes valid again (a dangling symlink fixed, a
//     deleted file restored, an error undone) is applied without any edit.
//     A missing or unreadable path is a failed load, never silence.
//
// What this guarantees, honestly: a prefix that does not parse or validate
// is never applied, however long the writer pauses. A prefix that is valid
// on its own (a manifest cut at the end of a document, meshNetworks cut
// before its last network) is applied only if the writer pauses longer than
// Settle in the middle of writing. Writing a temporary file and renaming it
// over the target (or the ConfigMap `..data` swap) is atomic, and is the
// recommended way to write a watched file.
package filewatch

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Defaults for Options.
const (
	DefaultSettle = 150 * time.Millisecond
	DefaultPoll   = 2 * time.Second
)

// Options tune a watch; zero values take the defaults.
type Options struct {
	// Settle is how long the path must stay quiet before it is read.
	Settle time.Duration
	// Poll is how often the path is read again, whatever the events say.
	Poll time.Duration
	// Logger receives the watcher's own problems (no inotify, lost events).
	Logger *slog.Logger

	pollOnly bool // tests: behave as if inotify were unavailable
}

func (o Options) withDefaults() Options {
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Loader parses and validates a snapshot as a whole and applies it; on error
// it must apply nothing.
type Loader func(Snapshot) error

// Start loads path now (its error is returned and nothing is watched), then
// follows it until ctx ends: each stable change goes to load, and each new
// load error to rejected. load and rejected are never called concurrently.
func Start(ctx context.Context, path string, opts Options, load Loader, rejected func(error)) error {
	opts = opts.withDefaults()
	w := newWatcher(path, opts, load, rejected)
	// Watch before the first read, so that a change made right after it
	// is seen.
	w.updateWatches()
	first := read(path)
	err := load(first)
	for tries := 0; errors.Is(err, ErrChanged) && tries < 20 && ctx.Err() == nil; tries++ {
		time.Sleep(opts.Settle) // being written right now: let it settle
		first = read(path)
		err = load(first)
	}
	if err != nil {
		w.close()
		return err
	}
	w.last = first.print
	go w.run(ctx)
	return nil
}
