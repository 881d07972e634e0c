// Package istio reads Istio configuration resources — the networking
// Gateway and the security PeerAuthentication — from the config cluster,
// with istio.io/client-go, into the model (and from files, offline).
package istio

import (
	"context"
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	versioned "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/horizonmesh/horizon/internal/model"
)

// ConvertGateway turns a Gateway resource into the model, validating what
// Horizon uses: a non-empty selector and server ports in range.
func ConvertGateway(g *networkingv1.Gateway) (*model.IstioGateway, error) {
	obj := "Gateway " + g.Namespace + "/" + g.Name
	if len(g.Spec.GetSelector()) == 0 {
		return nil, fmt.Errorf("%s: spec.selector is empty (it would select no gateway proxy)", obj)
	}
	out := &model.IstioGateway{Name: g.Name, Namespace: g.Namespace, Selector: g.Spec.GetSelector()}
	for i, s := range g.Spec.GetServers() {
		p := s.GetPort()
		if p.GetNumber() == 0 || p.GetNumber() > 65535 {
			return nil, fmt.Errorf("%s: spec.servers[%d].port.number %d out of range", obj, i, p.GetNumber())
		}
		if len(s.GetHosts()) == 0 {
			return nil, fmt.Errorf("%s: spec.servers[%d].hosts is empty", obj, i)
		}
		srv := model.GatewayServer{Port: p.GetNumber(), PortName: p.GetName(), Protocol: p.GetProtocol(), Hosts: s.GetHosts()}
		if s.GetTls() != nil {
			srv.TLSMode = s.GetTls().GetMode().String()
		}
		out.Servers = append(out.Servers, srv)
	}
	return out, nil
}

// Sink receives the current set of valid Gateways.
type Sink interface {
	SetIstioGateways([]*model.IstioGateway)
	IstioGatewayError(object, msg string)
}

// WatchGateways follows networking.istio.io Gateways in every namespace of
// the config cluster until ctx ends. Invalid Gateways are reported and
// left out; the others keep applying.
func WatchGateways(ctx context.Context, client versioned.Interface, sink Sink) {
	factory := istioinformers.NewSharedInformerFactory(client, 0)
	inf := factory.Networking().V1().Gateways()
	follow(ctx, factory.Start, inf.Informer(),
		func() []*networkingv1.Gateway { l, _ := inf.Lister().List(labels.Everything()); return l },
		func(g *networkingv1.Gateway) string { return g.Namespace + "/" + g.Name },
		ConvertGateway, sink.SetIstioGateways, sink.IstioGatewayError)
}
