package install

import (
	"context"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager owns the fields Horizon's installer applies.
const FieldManager = "horizon"

// Client applies and removes installed objects in one cluster.
type Client struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
}

// NewClient returns a Client for the cluster of cfg.
func NewClient(cfg *rest.Config) (*Client, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

func (c *Client) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset() // a CRD applied a moment ago
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

// ApplyResult counts what an Apply did.
type ApplyResult struct {
	Created, Changed, Unchanged int
}

// Apply server-side-applies objs in order with field manager "horizon"
// (taking over fields another manager set: the installer's word is final
// for what it renders). An object whose resourceVersion does not move was
// unchanged. With dryRun nothing is persisted (the API server still
// validates and admits every object). Progress lines go to progress.
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool, progress io.Writer) (ApplyResult, error) {
	var res ApplyResult
	for _, u := range objs {
		ri, err := c.resource(u)
		if err != nil {
			return res, err
		}
		before := ""
		if cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
			before = cur.GetResourceVersion()
		} else if !apierrors.IsNotFound(err) {
			return res, fmt.Errorf("%s %s: %w", u.GetKind(), objectName(u), err)
		}
		body, err := u.MarshalJSON()
		if err != nil {
			return res, err
		}
		force := true
		opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		got, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts)
		if err != nil {
			return res, fmt.Errorf("%s %s: %w", u.GetKind(), objectName(u), err)
		}
		verb := "unchanged"
		switch {
		case before == "":
			res.Created++
			verb = "created"
		case got.GetResourceVersion() != before:
			res.Changed++
			verb = "configured"
		default:
			res.Unchanged++
		}
		if dryRun {
			verb += " (server dry run)"
		}
		fmt.Fprintf(progress, "%s %s %s\n", u.GetKind(), objectName(u), verb)
	}
	return res, nil
}

// Uninstall deletes every object labelled managed-by=horizon of the kinds
// objs names (namespaces excepted: they may hold the user's own objects,
// such as cacerts), and reports how many it deleted.
func (c *Client) Uninstall(ctx context.Context, objs []*unstructured.Unstructured, progress io.Writer) (int, error) {
	seen := map[schema.GroupVersionResource]bool{}
	deleted := 0
	for i := len(objs) - 1; i >= 0; i-- {
		u := objs[i]
		if u.GetKind() == "Namespace" {
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			continue // the kind is not served: nothing of it to delete
		}
		if err != nil {
			return deleted, err
		}
		if seen[m.Resource] {
			continue
		}
		seen[m.Resource] = true
		list, err := c.dyn.Resource(m.Resource).List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedBy})
		if err != nil {
			return deleted, fmt.Errorf("list %s: %w", m.Resource.Resource, err)
		}
		for _, item := range list.Items {
			var ri dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
			if item.GetNamespace() != "" {
				ri = c.dyn.Resource(m.Resource).Namespace(item.GetNamespace())
			}
			err := ri.Delete(ctx, item.GetName(), metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return deleted, fmt.Errorf("delete %s %s: %w", item.GetKind(), objectName(&item), err)
			}
			deleted++
			fmt.Fprintf(progress, "%s %s deleted\n", item.GetKind(), objectName(&item))
		}
	}
	return deleted, nil
}

func objectName(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}
