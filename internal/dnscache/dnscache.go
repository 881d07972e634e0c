// Package dnscache resolves gateway DNS names outside the push: a Table
// keeps the names the last mesh build asked for resolved in the
// background, refreshes them every TTL and says when an answer changed, so
// that model.Build only reads answers (model.NameTable) and a slow
// resolver never stalls a push. ResolveAll resolves a set of names once,
// for offline use.
package dnscache

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
)

// Timeout bounds each lookup.
const Timeout = 5 * time.Second

// Table is a model.NameTable resolved in the background. A name that
// stops resolving keeps its last good answer.
type Table struct {
	next     model.Resolver
	ttl      time.Duration
	onChange func() // an answer changed (or a name got its first answer)

	mu      sync.Mutex
	entries map[string]*entry
	kick    chan struct{}
}

type entry struct {
	answer   model.NameAnswer
	known    bool
	at       time.Time
	inFlight bool
}

// NewTable returns a table resolving with next, refreshing every ttl, and
// calling onChange (outside any lock) when an answer changes.
func NewTable(next model.Resolver, ttl time.Duration, onChange func()) *Table {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &Table{next: next, ttl: ttl, onChange: onChange, entries: map[string]*entry{}, kick: make(chan struct{}, 1)}
}

var _ model.NameTable = (*Table)(nil)

// Lookup answers from the table without waiting.
func (t *Table) Lookup(name string) ([]netip.Addr, error, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[name]
	if !ok || !e.known {
		return nil, nil, false
	}
	return e.answer.Addrs, e.answer.Err, true
}

// Want sets the names to keep resolved (a build's model.Mesh.GatewayNames):
// new ones are resolved at once by Run, names no longer wanted are
// forgotten.
func (t *Table) Want(names []string) {
	t.mu.Lock()
	added := false
	for _, n := range names {
		if _, ok := t.entries[n]; !ok {
			t.entries[n] = &entry{}
			added = true
		}
	}
	for n := range t.entries {
		if !slices.Contains(names, n) {
			delete(t.entries, n)
		}
	}
	t.mu.Unlock()
	if added {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

// Run resolves new names at once and every name again each ttl, until ctx
// ends.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(t.ttl)
	defer tick.Stop()
	for {
		t.refresh(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		case <-tick.C:
			t.refresh(ctx, true)
		}
	}
}

// refresh resolves the names never resolved (and, with all, those older
// than ttl), concurrently, and calls onChange once if any answer changed.
func (t *Table) refresh(ctx context.Context, all bool) {
	t.mu.Lock()
	var due []string
	for n, e := range t.entries {
		if !e.inFlight && (!e.known || (all && time.Since(e.at) >= t.ttl)) {
			e.inFlight = true
			due = append(due, n)
		}
	}
	t.mu.Unlock()
	if len(due) == 0 {
		return
	}
	answers := ResolveAll(ctx, t.next, due)
	changed := false
	t.mu.Lock()
	for n, a := range answers {
		e, ok := t.entries[n]
		if !ok {
			continue // no longer wanted
		}
		e.inFlight = false
		if e.known && e.answer.Err == nil && len(e.answer.Addrs) > 0 && (a.Err != nil || len(a.Addrs) == 0) {
			// A name that resolved before and fails now (a resolver
			// outage) keeps its last good answer: withdrawing the gateway
			// would cut a network off. It is retried at the next refresh.
			e.at = time.Now()
			continue
		}
		if !e.known || !sameAnswer(e.answer, a) {
			changed = true
		}
		e.answer, e.known, e.at = a, true, time.Now()
	}
	t.mu.Unlock()
	if changed && t.onChange != nil {
		t.onChange()
	}
}

func sameAnswer(a, b model.NameAnswer) bool {
	if (a.Err == nil) != (b.Err == nil) {
		return false
	}
	x, y := slices.Clone(a.Addrs), slices.Clone(b.Addrs)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}

// ResolveAll resolves names concurrently, each bounded by Timeout.
func ResolveAll(ctx context.Context, r model.Resolver, names []string) model.Names {
	out := make(model.Names, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, Timeout)
			defer cancel()
			addrs, err := r.LookupNetIP(c, "ip", n)
			mu.Lock()
			out[n] = model.NameAnswer{Addrs: addrs, Err: err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
