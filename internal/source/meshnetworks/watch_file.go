package meshnetworks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/filewatch"
)

// WatchFile applies the meshNetworks file at path now and each time it
// changes, until ctx ends. The file and its directory are watched with
// inotify (a mounted ConfigMap's `..data` swap included) and re-read every
// poll as a safety net; see package filewatch for when a change counts as
// written. log receives the watcher's own problems; rejections go to the
// sink.
//
// One rule at start and live: the file must be readable, not empty (nor
// only whitespace or comments: write `networks: {}` for no networks), parse
// and validate. At start a file breaking it is an error. Live, the change
// is reported with sink.MeshNetworksRejected, naming the file, and the last
// good config keeps serving; this includes a deleted or unreadable file,
// which is applied again as soon as it is back and valid.
func WatchFile(ctx context.Context, path string, poll time.Duration, sink Sink, log *slog.Logger) error {
	return watchFile(ctx, path, filewatch.Options{Poll: poll, Logger: log}, sink)
}

func watchFile(ctx context.Context, path string, opts filewatch.Options, sink Sink) error {
	load := func(s filewatch.Snapshot) error {
		nets, warnings, err := parseSnapshot(s)
		if err != nil {
			return err
		}
		sink.SetMeshNetworks(nets, warnings)
		return nil
	}
	if err := filewatch.Start(ctx, path, opts, load, sink.MeshNetworksRejected); err != nil {
		return fmt.Errorf("meshNetworks: %w", err)
	}
	return nil
}

func parseSnapshot(s filewatch.Snapshot) (*model.MeshNetworks, model.Diagnostics, error) {
	if s.Err != nil {
		reason := s.Err
		var pe *fs.PathError
		if errors.As(s.Err, &pe) {
			reason = pe.Err // the path is named below already
		}
		return nil, nil, fmt.Errorf("meshNetworks file %s cannot be read: %w (deleted, or a symlink to a missing file?)", s.Path, reason)
	}
	if s.Dir {
		return nil, nil, fmt.Errorf("meshNetworks file %s is a directory", s.Path)
	}
	// Parse takes empty input as "no networks", but an empty file is far
	// more often a truncated one (a copy, a full disk) than a wish to drop
	// every network: that must be said explicitly.
	if !hasContent(s.Data) {
		return nil, nil, fmt.Errorf("meshNetworks file %s is empty (or only whitespace and comments); write `networks: {}` to remove every network", s.Path)
	}
	nets, diags := Parse(s.Path, s.Data)
	if err := diags.Err(); err != nil {
		return nil, nil, err
	}
	return nets, diags.Warnings(), nil
}

// hasContent says data holds more than whitespace, comments and document
// separators.
func hasContent(data []byte) bool {
	for line := range bytes.Lines(data) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			return true
		}
	}
	return false
}
