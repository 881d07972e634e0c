package server

import "sync"

// subscriber is how the cache reaches a stream, and all it knows of one:
// ViewCache.Update tells each stream subscribed to a view that changed,
// ViewCache.Reclassify tells a stream it moved to another view. Neither
// waits for the stream. The ADS side implements it with a pushQueue per
// stream (conn.go).
type subscriber interface {
	// viewChanged: a view the stream is subscribed to has a new version.
	viewChanged()
	// viewMoved: the stream's subscription of typeURL is to follow view
	// to from now on (sent it whole).
	viewMoved(typeURL string, to *viewEntry)
}

// pushQueue is one stream's pending pushes, merged until the stream's
// goroutine takes them, as Istio's PushQueue merges a connection's
// pending push requests: any number of changes of its views are one push
// (the stream learns from each view's change log what it lacks), and of
// the moves of one type only the last counts. Here every stream has its
// own goroutine, the queue's only consumer, which waits on ready along
// with the stream's requests; so the queue is per stream, and a push
// never waits for another stream's.
type pushQueue struct {
	// ready holds a signal while a push is pending. A change queued after
	// the consumer took the signal signals again, so none is lost; at
	// worst the consumer finds nothing new.
	ready chan struct{}

	mu    sync.Mutex
	moves map[string]*viewEntry // by type: the view to follow
}

func newPushQueue() *pushQueue { return &pushQueue{ready: make(chan struct{}, 1)} }

func (q *pushQueue) viewChanged() { q.signal() }

func (q *pushQueue) viewMoved(typeURL string, to *viewEntry) {
	q.mu.Lock()
	if q.moves == nil {
		q.moves = map[string]*viewEntry{}
	}
	q.moves[typeURL] = to
	q.mu.Unlock()
	q.signal()
}

func (q *pushQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default: // already pending: the consumer will see this too
	}
}

// takeMoves returns the moves queued since the last call (nil: none).
func (q *pushQueue) takeMoves() map[string]*viewEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.moves
	q.moves = nil
	return m
}
