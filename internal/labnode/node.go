package labnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// Config configures a lab node.
type Config struct {
	// NodeName names the Node.
	NodeName string
	// Region and Zone become topology.kubernetes.io/region and /zone.
	Region, Zone string
	// Labels are further Node labels.
	Labels map[string]string
	// RestConfig reaches the cluster's API server.
	RestConfig *rest.Config

	// Programs stand in for images.
	Programs Programs
	// Path is the containers' PATH (DefaultPath when empty); it must hold
	// sh, mount, setpriv, sleep and curl.
	Path string

	// NetnsPrefix starts every namespace and interface name (1-6 bytes);
	// pods' namespaces are PREFIX-pXXXXXXXX.
	NetnsPrefix string
	// BridgeNS holds Bridge ("" for this network namespace).
	BridgeNS, Bridge string
	// PodCIDR, e.g. 10.77.0.0/24: pods get addresses from it.
	PodCIDR string
	// Gateway is the pods' default route (optional; never handed out).
	Gateway string
	// Reserved addresses of PodCIDR are never handed out.
	Reserved []string
	// NodeIP is the Node's InternalIP and the pods' hostIP (default:
	// Gateway).
	NodeIP string

	// Env is NAME=VALUE pairs every container gets before its own (the
	// kubelet's KUBERNETES_SERVICE_HOST/PORT); the container's win.
	Env []string
	// HostsFile, when set, is bind-mounted read-only at /etc/hosts in
	// every container (the lab keeps Service names in it). Rewrite it in
	// place, never by rename: the mount holds the file, not the name.
	HostsFile string
	// ResolvConf, when set, is bind-mounted read-only at /etc/resolv.conf
	// in every container (otherwise they see the machine's).
	ResolvConf string

	// StateDir holds each pod's volumes and container logs
	// (pods/NAMESPACE_NAME_UID/{volumes,logs}); removed with the pod.
	StateDir string
	// LogMaxSize and LogMaxFiles cap each container run's log: rotated
	// past LogMaxSize bytes, the newest LogMaxFiles files kept (10 MiB and
	// 5 by default, as the kubelet's containerLogMaxSize/MaxFiles).
	LogMaxSize  int64
	LogMaxFiles int

	// KubeletListener, when set, serves the kubelet API (kubeletapi.go) on
	// it over TLS with KubeletTLS (its serving certificate, and the CAs of
	// client certificates) to clients whose certificate's common name is
	// in KubeletClients (the API server's kubelet client). Its port is the
	// Node's kubelet endpoint.
	KubeletListener net.Listener
	KubeletTLS      *tls.Config
	KubeletClients  []string
	// Runtime runs the pods' network namespaces and processes
	// (ExecRuntime by default; a fake in tests).
	Runtime Runtime
	// Logf logs (nothing by default).
	Logf func(format string, args ...any)
	// RestartBackoff is the first delay before a container restarts
	// (doubling up to MaxRestartBackoff); 1s and 60s by default.
	RestartBackoff, MaxRestartBackoff time.Duration
}

// Node is a running lab node.
type Node struct {
	cfg    Config
	client kubernetes.Interface
	rt     Runtime
	net    *Network
	nodeIP string

	mu     sync.Mutex
	pods   map[string]*podRun // namespace/name
	dying  map[*podRun]struct{}
	notify func(*corev1.Pod)

	ready chan struct{}
}

// New checks the configuration and connects; Run starts the node.
func New(cfg Config) (*Node, error) {
	if cfg.RestConfig == nil {
		return nil, errors.New("labnode: NodeName, RestConfig and StateDir are required")
	}
	client, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, err
	}
	return newNode(cfg, client)
}

// newNode is New with a client of the cluster's API server.
func newNode(cfg Config, client kubernetes.Interface) (*Node, error) {
	if cfg.NodeName == "" || cfg.StateDir == "" {
		return nil, errors.New("labnode: NodeName, RestConfig and StateDir are required")
	}
	if cfg.Runtime == nil {
		cfg.Runtime = ExecRuntime{}
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = time.Second
	}
	if cfg.MaxRestartBackoff <= 0 {
		cfg.MaxRestartBackoff = time.Minute
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.KubeletListener != nil && (cfg.KubeletTLS == nil || len(cfg.KubeletTLS.Certificates) == 0 ||
		cfg.KubeletTLS.ClientCAs == nil || len(cfg.KubeletClients) == 0) {
		return nil, errors.New("labnode: the kubelet API needs KubeletTLS (a serving certificate and client CAs) and KubeletClients")
	}
	cidr, err := netip.ParsePrefix(cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("labnode: pod CIDR: %w", err)
	}
	nw := &Network{Runner: cfg.Runtime, Prefix: cfg.NetnsPrefix, BridgeNS: cfg.BridgeNS, Bridge: cfg.Bridge, CIDR: cidr}
	if cfg.Gateway != "" {
		if nw.Gateway, err = netip.ParseAddr(cfg.Gateway); err != nil {
			return nil, fmt.Errorf("labnode: gateway: %w", err)
		}
	}
	for _, r := range cfg.Reserved {
		a, err := netip.ParseAddr(r)
		if err != nil {
			return nil, fmt.Errorf("labnode: reserved address: %w", err)
		}
		nw.Reserved = append(nw.Reserved, a)
	}
	if err := nw.Validate(); err != nil {
		return nil, fmt.Errorf("labnode: %w", err)
	}
	nodeIP := cfg.NodeIP
	if nodeIP == "" {
		nodeIP = cfg.Gateway
	}
	return &Node{cfg: cfg, client: client, rt: cfg.Runtime, net: nw, nodeIP: nodeIP, pods: map[string]*podRun{}, dying: map[*podRun]struct{}{}, ready: make(chan struct{})}, nil
}

// Ready is closed once the Node is registered and pods are watched.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// PodNetns returns the network namespace of a pod running here.
func (n *Node) PodNetns(namespace, name string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pods[namespace+"/"+name]
	if !ok {
		return "", false
	}
	return p.netns, true
}

// Run removes leftovers of an earlier run (namespaces of this prefix),
// registers the Node, keeps its Lease and status, and runs the pods bound to
// it until ctx ends; then it stops every pod (SIGTERM, SIGKILL after a few
// seconds) and removes their namespaces, interfaces and files.
func (n *Node) Run(ctx context.Context) error {
	if err := n.net.Leftovers(ctx); err != nil {
		n.cfg.Logf("labnode %s: leftovers: %v", n.cfg.NodeName, err)
	}
	if err := os.MkdirAll(filepath.Join(n.cfg.StateDir, "pods"), 0o755); err != nil {
		return err
	}
	cs := n.client
	nc, err := vknode.NewNodeController(vknode.NaiveNodeProvider{}, n.nodeObject(), cs.CoreV1().Nodes(),
		vknode.WithNodeEnableLeaseV1(cs.CoordinationV1().Leases(corev1.NamespaceNodeLease), 40),
		vknode.WithNodeStatusUpdateErrorHandler(func(_ context.Context, err error) error {
			n.cfg.Logf("labnode %s: node status: %v", n.cfg.NodeName, err)
			return err
		}))
	if err != nil {
		return err
	}
	podFactory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", n.cfg.NodeName).String()
	}))
	// virtual-kubelet wants these informers for its own env resolution,
	// which this node does itself (SkipDownwardAPIResolution): never started.
	unused := informers.NewSharedInformerFactory(cs, 0)
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer bc.Shutdown()
	pc, err := vknode.NewPodController(vknode.PodControllerConfig{
		PodClient: cs.CoreV1(), PodInformer: podFactory.Core().V1().Pods(),
		EventRecorder:     bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "horizon-lab-node", Host: n.cfg.NodeName}),
		Provider:          n,
		ConfigMapInformer: unused.Core().V1().ConfigMaps(), SecretInformer: unused.Core().V1().Secrets(),
		ServiceInformer:           unused.Core().V1().Services(),
		SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- nc.Run(runCtx) }()
	go func() {
		defer wg.Done()
		select {
		case <-nc.Ready():
		case <-runCtx.Done():
			return
		}
		podFactory.Start(runCtx.Done())
		errc <- pc.Run(runCtx, 4)
	}()
	go func() {
		select {
		case <-pc.Ready():
			close(n.ready)
		case <-runCtx.Done():
		}
	}()
	if n.cfg.KubeletListener != nil {
		wg.Add(1)
		go func() { defer wg.Done(); n.serveKubeletAPI(runCtx) }()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	wg.Wait()
	podFactory.Shutdown()
	n.stopAll()
	return runErr
}

// stopAll terminates every pod (grace at most 5s) and waits.
func (n *Node) stopAll() {
	n.mu.Lock()
	var all []*podRun
	for _, p := range n.pods {
		all = append(all, p)
	}
	for p := range n.dying {
		all = append(all, p)
	}
	n.mu.Unlock()
	for _, p := range all {
		p.terminate(5*time.Second, false, true)
	}
	for _, p := range all {
		<-p.gone
	}
}

func (n *Node) nodeObject() *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname": n.cfg.NodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": runtime.GOARCH,
		"type": "horizon-lab-node",
	}
	if n.cfg.Region != "" {
		labels[corev1.LabelTopologyRegion] = n.cfg.Region
	}
	if n.cfg.Zone != "" {
		labels[corev1.LabelTopologyZone] = n.cfg.Zone
	}
	for k, v := range n.cfg.Labels {
		labels[k] = v
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	// The API server reaches the kubelet API at the InternalIP (the lab
	// starts it with --kubelet-preferred-address-types=InternalIP: the
	// host name resolves nowhere) and the kubelet endpoint's port.
	var endpoints corev1.NodeDaemonEndpoints
	if l := n.cfg.KubeletListener; l != nil {
		if a, ok := l.Addr().(*net.TCPAddr); ok {
			endpoints.KubeletEndpoint.Port = int32(a.Port)
		}
	}
	addrs := []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: n.cfg.NodeName}}
	if n.nodeIP != "" {
		addrs = append([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.nodeIP}}, addrs...)
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.cfg.NodeName, Labels: labels},
		Spec:       corev1.NodeSpec{PodCIDR: n.cfg.PodCIDR, PodCIDRs: []string{n.cfg.PodCIDR}},
		Status: corev1.NodeStatus{
			Capacity: capacity, Allocatable: capacity,
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "horizon lab node is running pods as local processes"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", ""),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", ""),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", ""),
				cond(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "RouteCreated", ""),
			},
			Addresses: addrs, DaemonEndpoints: endpoints,
			NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: runtime.GOARCH,
				KubeletVersion: "v1.37.2-horizon-lab", ContainerRuntimeVersion: "horizon-lab://processes"},
		},
	}
}

// clusterLookup reads ConfigMaps and Secrets from the API server.
type clusterLookup struct{ cs kubernetes.Interface }

func (l clusterLookup) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return l.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (l clusterLookup) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return l.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

// Token asks the TokenRequest API for a token of the pod's service account
// ("default" when none), bound to the pod.
func (l clusterLookup) Token(ctx context.Context, pod *corev1.Pod, audience string, ttl int64) (string, time.Time, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = defaultSAAcc
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &ttl,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	tr, err := l.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, err
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}
