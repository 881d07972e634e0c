package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

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
	mapper meta.RESTMapper // reset when a kind is not found, if it can be
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
	if r, ok := c.mapper.(meta.ResettableRESTMapper); ok && meta.IsNoMatchError(err) {
		r.Reset() // a CRD applied a moment ago
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

// Ours reports whether an object in the cluster is one Horizon's installer
// created: it carries managed-by=horizon, which the installer sets only on
// objects it creates (and manifest generate prints on every object).
func Ours(u *unstructured.Unstructured) bool {
	return u.GetLabels()[ManagedByLabel] == ManagedBy
}

// Shared reports whether a rendered object may exist before Horizon is
// installed, created by someone else, and still be applied to: the
// namespace (users create istio-system for cacerts) and Istio's istio
// ConfigMap (meshNetworks beside Istio's mesh). Every other object that
// exists and is not Horizon's is refused, never taken over.
func Shared(u *unstructured.Unstructured) bool {
	return u.GetKind() == "Namespace" && u.GetAPIVersion() == "v1" ||
		u.GetKind() == "ConfigMap" && u.GetAPIVersion() == "v1" && u.GetName() == MeshConfigMap
}

// Apply server-side-applies objs in order with field manager "horizon".
//
// Objects Horizon created (Ours) are applied with force: the installer's
// word is final for what it renders there. An object that existed before
// and is not Horizon's is never taken over: a Shared one (the namespace,
// Istio's istio ConfigMap) is applied without the managed-by label and
// without force, so that Horizon owns only the fields it sets, another
// manager's fields stay as they are, a field another manager set to another
// value is a conflict that fails the install naming it, and uninstall,
// which deletes by that label, leaves the object; any other is refused.
// Every object is looked at before anything is applied: a refusal changes
// nothing.
//
// An object whose resourceVersion does not move was unchanged. With dryRun
// nothing is persisted (the API server still validates and admits every
// object). Progress lines go to progress.
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool, progress io.Writer) (ApplyResult, error) {
	var res ApplyResult
	exists := make([]bool, len(objs))
	before := make([]string, len(objs)) // resourceVersion
	foreign := make([]bool, len(objs))  // exists, not Horizon's, Shared
	var refused []string
	for i, u := range objs {
		ri, err := c.resource(u)
		if meta.IsNoMatchError(err) {
			continue // its kind (a CRD in objs) is not served yet: it cannot exist
		}
		if err != nil {
			return res, err
		}
		cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("%s %s: %w", u.GetKind(), objectName(u), err)
		}
		exists[i], before[i] = true, cur.GetResourceVersion()
		switch {
		case Ours(cur):
		case Shared(u):
			foreign[i] = true
			// A field another manager set to another value is found
			// now (a server dry run), before anything is applied.
			if _, err := c.patch(ctx, ri, u, true, true); apierrors.IsConflict(err) {
				refused = append(refused, conflict(u, err))
			} else if err != nil {
				return res, fmt.Errorf("%s %s: %w", u.GetKind(), objectName(u), err)
			}
		default:
			refused = append(refused, refusal(u))
		}
	}
	if len(refused) > 0 {
		return res, fmt.Errorf("nothing applied: %s", strings.Join(refused, "; "))
	}
	for i, u := range objs {
		ri, err := c.resource(u)
		if err != nil {
			return res, err
		}
		got, err := c.patch(ctx, ri, u, foreign[i], dryRun)
		if err != nil {
			if foreign[i] && apierrors.IsConflict(err) {
				return res, errors.New(conflict(u, err))
			}
			return res, fmt.Errorf("%s %s: %w", u.GetKind(), objectName(u), err)
		}
		verb := "unchanged"
		switch {
		case !exists[i]:
			res.Created++
			verb = "created"
		case got.GetResourceVersion() != before[i]:
			res.Changed++
			verb = "configured"
		default:
			res.Unchanged++
		}
		if foreign[i] {
			verb += " (not Horizon's: only Horizon's fields applied; uninstall keeps it)"
		}
		if dryRun {
			verb += " (server dry run)"
		}
		fmt.Fprintf(progress, "%s %s %s\n", u.GetKind(), objectName(u), verb)
	}
	return res, nil
}

// refusal says why an existing object that is not Horizon's is not applied.
func refusal(u *unstructured.Unstructured) string {
	msg := fmt.Sprintf("%s %s exists and Horizon did not create it (it lacks %s=%s); Horizon does not take over objects it does not own",
		u.GetKind(), objectName(u), ManagedByLabel, ManagedBy)
	if u.GetKind() == "Service" && u.GetName() == IstiodName {
		msg += " — this is Istio's istiod Service: install without --istiod-service (istiodService) and repoint it by hand, " +
			"or delete it once istiod is gone and install again (docs/istio-migration.md)"
	} else {
		msg += ": delete or rename it, or leave out the setting that renders it"
	}
	return msg
}

// patch server-side-applies u. An object Horizon does not own (foreign)
// goes without the managed-by label and without force: Horizon then owns
// only the fields it sets, and another manager's field is a conflict.
func (c *Client) patch(ctx context.Context, ri dynamic.ResourceInterface, u *unstructured.Unstructured, foreign, dryRun bool) (*unstructured.Unstructured, error) {
	force := !foreign
	if foreign {
		u = u.DeepCopy()
		labels := u.GetLabels()
		delete(labels, ManagedByLabel)
		u.SetLabels(labels)
	}
	body, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts)
}

// conflict says why a field of an object Horizon did not create is not
// applied.
func conflict(u *unstructured.Unstructured, err error) string {
	msg := fmt.Sprintf("%s %s existed before Horizon, which applies only its own fields to objects it did not create and "+
		"does not take over another manager's: %v", u.GetKind(), objectName(u), err)
	if u.GetKind() == "ConfigMap" && u.GetName() == MeshConfigMap {
		msg += " (leave out --mesh-networks/meshNetworks and set meshNetworks with the tool that owns the ConfigMap: discovery reads it there)"
	}
	return msg
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
