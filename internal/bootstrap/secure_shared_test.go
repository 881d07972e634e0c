package bootstrap

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// Replicas without cacerts share one self-signed root: whichever starts
// first stores it, the others (even starting at the same moment) load it.
func TestReplicasShareTheSelfSignedRoot(t *testing.T) {
	client := fake.NewClientset()
	c := DefaultConfig()
	log := testkit.Logger()
	roots := make([][]byte, 4)
	var wg sync.WaitGroup
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := loadAuthority(context.Background(), c, client, log)
			if err != nil {
				t.Error(err)
				return
			}
			roots[i] = a.RootPEM()
		}()
	}
	wg.Wait()
	for i := range roots {
		if len(roots[i]) == 0 || !bytes.Equal(roots[i], roots[0]) {
			t.Fatalf("replica %d has another root", i)
		}
	}
}
