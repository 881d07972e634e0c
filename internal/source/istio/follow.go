package istio

import (
	"context"
	"sort"
	"sync"

	"k8s.io/client-go/tools/cache"
)

// follow keeps a sink current with every object an informer holds, for the
// Gateway, DestinationRule and PeerAuthentication watches alike: on each
// event it converts all of them (sorted by namespace/name, so the sink sees
// a stable order), reports each that does not convert and leaves it out,
// and sets the rest. It returns once the informer has synced and the first
// set — possibly empty, a defined state — was delivered.
func follow[T any, M any](ctx context.Context, start func(stop <-chan struct{}), inf cache.SharedIndexInformer,
	list func() []T, key func(T) string, convert func(T) (M, error), set func([]M), report func(object, msg string)) {
	var mu sync.Mutex
	push := func(any) {
		mu.Lock()
		defer mu.Unlock()
		all := list()
		sort.Slice(all, func(i, j int) bool { return key(all[i]) < key(all[j]) })
		var out []M
		for _, o := range all {
			m, err := convert(o)
			if err != nil {
				report(key(o), err.Error())
				continue
			}
			out = append(out, m)
		}
		set(out)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: push, UpdateFunc: func(_, o any) { push(o) }, DeleteFunc: push,
	})
	start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
	push(nil)
}
