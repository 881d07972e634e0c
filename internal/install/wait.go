package install

import (
	"context"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// WithIstioCRDs prepends the named Istio CRDs (IstioCRD) that the cluster
// does not serve yet to objs. The CRDs are not labelled as the
// installer's: uninstall must not delete every Gateway or DestinationRule
// of the cluster.
func (c *Client) WithIstioCRDs(ctx context.Context, objs []*unstructured.Unstructured, names ...string) ([]*unstructured.Unstructured, error) {
	var missing []*unstructured.Unstructured
	for _, name := range names {
		crd, err := IstioCRD(name)
		if err != nil {
			return nil, err
		}
		ri, err := c.resource(crd)
		if err != nil {
			return nil, err
		}
		_, err = ri.Get(ctx, crd.GetName(), metav1.GetOptions{})
		switch {
		case err == nil:
			continue
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("CustomResourceDefinition %s: %w", crd.GetName(), err)
		}
		missing = append(missing, crd)
	}
	return append(missing, objs...), nil
}

// AwaitingJoin splits the Deployments of objs that install can wait for
// from those that cannot roll out before the primary has joined this
// cluster (horizon create-remote-secret): a remote cluster's gateway is
// Ready once its Envoy has its config, which needs its certificate, which
// the primary's discovery signs only once it can review the gateway's
// token with this cluster's API server, i.e. once it has the remote
// Secret. Other objects stay in wait.
func AwaitingJoin(s Settings, objs []*unstructured.Unstructured) (wait, awaiting []*unstructured.Unstructured) {
	for _, u := range objs {
		if s.Remote && u.GetKind() == "Deployment" && u.GetName() == GatewayName {
			awaiting = append(awaiting, u)
			continue
		}
		wait = append(wait, u)
	}
	return wait, awaiting
}

// WaitRollout waits until every Deployment in objs has rolled out (its
// new ReplicaSet's pods available), printing a progress line every few
// seconds, or until timeout.
func (c *Client) WaitRollout(ctx context.Context, objs []*unstructured.Unstructured, timeout time.Duration, progress io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		ri, err := c.resource(u)
		if err != nil {
			return err
		}
		last := time.Time{}
		for {
			cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("Deployment %s: %w", objectName(u), err)
			}
			done, status := rolledOut(cur)
			if done {
				fmt.Fprintf(progress, "Deployment %s rolled out\n", objectName(u))
				break
			}
			if time.Since(last) > 5*time.Second {
				fmt.Fprintf(progress, "waiting for Deployment %s: %s\n", objectName(u), status)
				last = time.Now()
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("Deployment %s did not roll out in %s: %s", objectName(u), timeout, status)
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// rolledOut reads a Deployment's status as `kubectl rollout status` does.
func rolledOut(d *unstructured.Unstructured) (bool, string) {
	gen, _, _ := unstructured.NestedInt64(d.Object, "metadata", "generation")
	observed, _, _ := unstructured.NestedInt64(d.Object, "status", "observedGeneration")
	want, found, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
	if !found {
		want = 1
	}
	updated, _, _ := unstructured.NestedInt64(d.Object, "status", "updatedReplicas")
	available, _, _ := unstructured.NestedInt64(d.Object, "status", "availableReplicas")
	status := fmt.Sprintf("%d of %d updated replicas available", min(updated, available), want)
	if observed < gen {
		return false, "waiting for the controller to observe the new spec"
	}
	return updated >= want && available >= want, status
}
