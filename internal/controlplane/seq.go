package controlplane

import (
	"context"
	"sync"
)

// pushSeq counts completed pushes, for whoever must know that a push has
// happened (tests wait on it instead of sleeping; Contour's feature tests
// do the same with their handler's sequence).
type pushSeq struct {
	mu   sync.Mutex
	n    uint64
	done chan struct{} // closed when push n+1 completes
}

func (s *pushSeq) init() { s.done = make(chan struct{}) }

// completed records a push whose views are updated.
func (s *pushSeq) completed() {
	s.mu.Lock()
	s.n++
	close(s.done)
	s.done = make(chan struct{})
	s.mu.Unlock()
}

// PushSeq is how many pushes have completed (each: the mesh rebuilt and
// every view updated).
func (cp *ControlPlane) PushSeq() uint64 {
	cp.seq.mu.Lock()
	defer cp.seq.mu.Unlock()
	return cp.seq.n
}

// WaitPush blocks until a push after push number after has completed, and
// returns the number of pushes then. Everything a push hands to the views
// happens before it returns; delivery to the streams follows.
func (cp *ControlPlane) WaitPush(ctx context.Context, after uint64) (uint64, error) {
	for {
		cp.seq.mu.Lock()
		n, done := cp.seq.n, cp.seq.done
		cp.seq.mu.Unlock()
		if n > after {
			return n, nil
		}
		select {
		case <-done:
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}

// Push asks for a push as any change does (debounced), e.g. to have a
// marker push a test can wait for.
func (cp *ControlPlane) Push() { cp.changed() }
