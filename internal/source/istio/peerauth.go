package istio

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	versioned "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/horizonmesh/horizon/internal/model"
)

// ConvertPeerAuthentication turns a PeerAuthentication (security.istio.io
// v1 or v1beta1: one spec) into the model, validating it as Istio does:
// known modes, portLevelMtls only with a selector, ports 1-65535.
func ConvertPeerAuthentication(meta metav1.ObjectMeta, spec *securityapi.PeerAuthentication) (*model.PeerAuthentication, error) {
	obj := "PeerAuthentication " + meta.Namespace + "/" + meta.Name
	out := &model.PeerAuthentication{Name: meta.Name, Namespace: meta.Namespace, Created: meta.CreationTimestamp.Time}
	sel := spec.GetSelector().GetMatchLabels()
	for k := range sel {
		if k == "" {
			return nil, fmt.Errorf("%s: spec.selector.matchLabels has an empty key", obj)
		}
	}
	if len(sel) > 0 {
		out.Selector = sel
	}
	mode, err := convertMode(spec.GetMtls())
	if err != nil {
		return nil, fmt.Errorf("%s: spec.mtls.mode: %w", obj, err)
	}
	out.Mode = mode
	if len(spec.GetPortLevelMtls()) > 0 && len(sel) == 0 {
		return nil, fmt.Errorf("%s: spec.portLevelMtls requires spec.selector.matchLabels (port-level settings apply to selected workloads only)", obj)
	}
	for _, port := range slices.Sorted(maps.Keys(spec.GetPortLevelMtls())) {
		if port == 0 || port > 65535 {
			return nil, fmt.Errorf("%s: spec.portLevelMtls[%d]: port out of range 1-65535", obj, port)
		}
		m, err := convertMode(spec.GetPortLevelMtls()[port])
		if err != nil {
			return nil, fmt.Errorf("%s: spec.portLevelMtls[%d].mode: %w", obj, port, err)
		}
		if out.PortLevel == nil {
			out.PortLevel = map[uint32]model.MTLSMode{}
		}
		out.PortLevel[port] = m
	}
	return out, nil
}

// convertMode reads a MutualTLS setting; absent is UNSET.
func convertMode(m *securityapi.PeerAuthentication_MutualTLS) (model.MTLSMode, error) {
	v := m.GetMode()
	name, ok := securityapi.PeerAuthentication_MutualTLS_Mode_name[int32(v)]
	if !ok {
		return model.MTLSUnset, fmt.Errorf("unknown mode %d", v)
	}
	return model.ParseMTLSMode(name)
}

// PeerAuthSink receives the current set of valid PeerAuthentications.
type PeerAuthSink interface {
	SetPeerAuthentications([]*model.PeerAuthentication)
	PeerAuthenticationError(object, msg string)
}

// PeerAuthVersions are the security.istio.io versions that serve
// PeerAuthentications, newest first: one watch of the newest served
// version sees every object, whichever version it was written in.
var PeerAuthVersions = []string{"v1", "v1beta1"}

// WatchPeerAuthentications follows security.istio.io PeerAuthentications
// of version (one of PeerAuthVersions) in every namespace of the config
// cluster until ctx ends. It returns once the informer has synced and the
// first set is out. Invalid objects are reported and left out; the others
// keep applying.
func WatchPeerAuthentications(ctx context.Context, client versioned.Interface, version string, sink PeerAuthSink) error {
	factory := istioinformers.NewSharedInformerFactory(client, 0)
	var inf cache.SharedIndexInformer
	var list func() []namedSpec
	switch version {
	case "v1":
		i := factory.Security().V1().PeerAuthentications()
		inf = i.Informer()
		list = func() []namedSpec {
			objs, _ := i.Lister().List(labels.Everything())
			return namedSpecs(objs, func(o *securityv1.PeerAuthentication) namedSpec { return namedSpec{o.ObjectMeta, &o.Spec} })
		}
	case "v1beta1":
		i := factory.Security().V1beta1().PeerAuthentications()
		inf = i.Informer()
		list = func() []namedSpec {
			objs, _ := i.Lister().List(labels.Everything())
			return namedSpecs(objs, func(o *securityv1beta1.PeerAuthentication) namedSpec { return namedSpec{o.ObjectMeta, &o.Spec} })
		}
	default:
		return fmt.Errorf("PeerAuthentication version %q is not one of %s", version, strings.Join(PeerAuthVersions, ", "))
	}
	follow(ctx, factory.Start, inf, list,
		func(o namedSpec) string { return o.meta.Namespace + "/" + o.meta.Name },
		func(o namedSpec) (*model.PeerAuthentication, error) { return ConvertPeerAuthentication(o.meta, o.spec) },
		sink.SetPeerAuthentications, sink.PeerAuthenticationError)
	return nil
}

// namedSpec is one object of either version.
type namedSpec struct {
	meta metav1.ObjectMeta
	spec *securityapi.PeerAuthentication
}

// namedSpecs lists objects of either served version as namedSpecs.
func namedSpecs[O any](objs []O, named func(O) namedSpec) []namedSpec {
	out := make([]namedSpec, 0, len(objs))
	for _, o := range objs {
		out = append(out, named(o))
	}
	return out
}
