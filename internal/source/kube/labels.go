package kube

// Labels Horizon reads, spelled as Istio users already write them.
const (
	LabelNetwork       = "topology.istio.io/network"
	LabelTLSMode       = "security.istio.io/tlsMode"
	TLSModeIstio       = "istio"
	LabelServiceName   = "kubernetes.io/service-name"
	LabelRegion        = "topology.kubernetes.io/region"
	LabelZone          = "topology.kubernetes.io/zone"
	LabelSubzone       = "topology.istio.io/subzone"
	LabelGatewayPort   = "networking.istio.io/gatewayPort"
	DefaultSystemNS    = "istio-system"
	DefaultServiceAcct = "default"
)
