package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/horizonmesh/horizon/internal/k8sproc"
)

// Up is a sequence of named steps, as kind's cluster creation is (its
// create.go runs a list of actions, each with Execute): the lab's steps
// (upSteps, startSteps), and within startControlPlanes each cluster's
// (clusterSteps).

// A step is one named part of Up.
type step interface {
	Execute(ctx context.Context, r *run) error
}

// upSteps prepare the machine; nothing of the new lab runs yet, so a
// failure leaves nothing to stop.
func upSteps(prev *State) []step {
	return []step{checkPrograms{}, cleanLeftovers{prev: prev}, buildNetworks{}, recordState{}}
}

// startSteps start the lab, bounded by Options.Timeout; a failure stops
// every process started and removes the networks.
func startSteps() []step {
	return []step{startControlPlanes{}, writeKubeconfig{}, startNodes{}}
}

// Up starts the lab in o.StateDir and waits until both clusters are ready:
// each API server answers /readyz, the controller manager and the scheduler
// /healthz, and the controller manager has made the default ServiceAccount.
// When the lab is already up it returns alreadyUp and changes nothing; what
// an earlier lab left (processes, files) is cleaned first. On failure every
// process Up started is stopped and the logs are kept.
func Up(ctx context.Context, opts Options) (alreadyUp bool, err error) {
	o, err := opts.normalized()
	if err != nil {
		return false, err
	}
	if err := CheckBinaries(o.BinDir); err != nil {
		return false, err
	}
	begin := time.Now()
	prev, err := LoadState(o.StateDir)
	if err != nil {
		o.logf("%v: treating it as a leftover", err)
	}
	if prev != nil {
		err := prev.ready(ctx)
		if err == nil {
			o.logf("the lab is already up in %s (`horizon lab down` stops it)", o.StateDir)
			return true, nil
		}
		o.logf("an earlier lab in %s is not (fully) up: %v", o.StateDir, err)
	}
	r := &run{o: o}
	for _, s := range upSteps(prev) {
		if err := s.Execute(ctx, r); err != nil {
			return false, err
		}
	}
	bounded, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for _, s := range startSteps() {
		if err := s.Execute(bounded, r); err != nil {
			o.logf("stopping what was started (logs kept in %s; `horizon lab down` removes them)", o.StateDir)
			if serr := stopTiered(r.st.processes(), o.StopGrace); serr != nil {
				err = errors.Join(err, serr)
			}
			if nerr := TeardownNetworks(context.WithoutCancel(ctx)); nerr != nil {
				err = errors.Join(err, nerr)
			}
			return false, err
		}
	}
	o.logf("up in %s: kubeconfig %s, contexts %s", time.Since(begin).Round(100*time.Millisecond), KubeconfigPath(o.StateDir), clusterNames())
	return false, nil
}

// run is one Up.
type run struct {
	o  Options
	mu sync.Mutex
	st *State
	// pkis by cluster, for the kubeconfig.
	pkis sync.Map
}

// record adds p to cluster's processes and saves the state.
func (r *run) record(cluster string, p Process) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.st.cluster(cluster)
	c.Processes = append(c.Processes, p)
	return r.st.save()
}

// eachCluster runs fn for every cluster at once and joins their errors.
func eachCluster(fn func(ClusterSpec) error) error {
	errs := make([]error, len(Clusters))
	var wg sync.WaitGroup
	for i, c := range Clusters {
		wg.Go(func() { errs[i] = fn(c) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkPrograms: what the pods run, checked before anything starts (a lab
// that is up already has them).
type checkPrograms struct{}

func (checkPrograms) Execute(_ context.Context, r *run) error { return r.o.checkPrograms() }

// cleanLeftovers stops what an earlier lab left and removes its files
// (cleanEarlierLab).
type cleanLeftovers struct{ prev *State }

func (s cleanLeftovers) Execute(_ context.Context, r *run) error { return cleanEarlierLab(r.o, s.prev) }

// buildNetworks makes the state directory and the lab's networks
// (network.go).
type buildNetworks struct{}

func (buildNetworks) Execute(ctx context.Context, r *run) error {
	if err := os.MkdirAll(r.o.StateDir, 0o755); err != nil {
		return err
	}
	if err := SetupNetworks(ctx); err != nil {
		return err
	}
	if err := writeOwner(r.o.OwnerFile, r.o.StateDir); err != nil {
		return fmt.Errorf("recording the lab's networks' owner: %w", err)
	}
	r.o.logf("networks: %s", networkSummary())
	return nil
}

// recordState writes lab.json with the clusters and no process yet.
type recordState struct{}

func (recordState) Execute(_ context.Context, r *run) error {
	r.st = &State{StateDir: r.o.StateDir, BinDir: r.o.BinDir}
	for _, c := range Clusters {
		r.st.Clusters = append(r.st.Clusters, ClusterState{Name: c.Name, ServiceCIDR: c.ServiceCIDR})
	}
	return r.st.save()
}

// startControlPlanes brings up both clusters' control planes at once
// (clusterSteps), each again on other ports when one was taken.
type startControlPlanes struct{}

func (startControlPlanes) Execute(ctx context.Context, r *run) error {
	return eachCluster(func(spec ClusterSpec) error {
		for attempt := 1; ; attempt++ {
			c := &clusterRun{run: r, spec: spec, begin: time.Now()}
			err := c.execute(ctx)
			if err == nil || !errors.Is(err, k8sproc.ErrPortTaken) || attempt >= 3 {
				return err
			}
			r.o.logf("%s: %v; starting again on other ports", spec.Name, err)
			r.mu.Lock()
			cs := r.st.cluster(spec.Name)
			procs := cs.Processes
			cs.Processes = nil
			r.mu.Unlock()
			if err := stopTiered(procs, r.o.StopGrace); err != nil {
				return fmt.Errorf("%s: %w", spec.Name, err)
			}
		}
	})
}

// writeKubeconfig writes <state>/kubeconfig: one admin context per
// cluster.
type writeKubeconfig struct{}

func (writeKubeconfig) Execute(_ context.Context, r *run) error {
	creds := map[string]clusterCreds{}
	for _, c := range r.st.Clusters {
		v, ok := r.pkis.Load(c.Name)
		if !ok {
			return fmt.Errorf("%s: no certificates", c.Name)
		}
		p := v.(*k8sproc.PKI)
		creds[c.Name] = clusterCreds{server: c.Server, user: "admin", ca: p.CACert, cert: p.AdminCert, key: p.AdminKey}
	}
	b, err := clientcmd.Write(*kubeconfig(creds, Clusters[0].Name))
	if err != nil {
		return err
	}
	return writeAtomic(KubeconfigPath(r.o.StateDir), b, 0o600)
}

// startNodes starts both clusters' lab nodes (`horizon lab node`) at once
// and waits for their Nodes to be Ready.
type startNodes struct{}

func (startNodes) Execute(ctx context.Context, r *run) error {
	clients, err := Clients(r.o.StateDir)
	if err != nil {
		return err
	}
	return eachCluster(func(spec ClusterSpec) error {
		begin := time.Now()
		dir := clusterDir(filepath.Join(r.o.StateDir, spec.Name))
		args := []string{"lab", "node", "--state-dir", r.o.StateDir, "--cluster", spec.Name}
		if r.o.Helloworld != "" {
			args = append(args, "--helloworld", r.o.Helloworld)
		}
		if r.o.Envoy != "" {
			args = append(args, "--envoy", r.o.Envoy)
		}
		p, err := spawn(command{Component: NodeComponent, Path: r.o.Horizon, Args: args}, string(dir), dir.log(NodeComponent), 0)
		if err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
		if err := r.record(spec.Name, p.Process); err != nil {
			return err
		}
		what := "the lab node " + spec.NodeName() + " Ready"
		if err := k8sproc.WaitFor(ctx, what, []*k8sproc.Proc{p.proc}, func(ctx context.Context) error {
			return nodeReady(ctx, clients[spec.Name], spec)
		}, r.note(spec.Name, what)); err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
		r.o.logf("%s: lab node %s Ready, pods on %s %s (%s)", spec.Name, spec.NodeName(), spec.Network, spec.PodCIDR, time.Since(begin).Round(100*time.Millisecond))
		return nil
	})
}

// note reports a long wait of cluster's for what.
func (r *run) note(cluster, what string) func(time.Duration, error) {
	return func(waited time.Duration, err error) {
		r.o.logf("%s: still waiting for %s (%s): %v", cluster, what, waited, err)
	}
}

// clusterRun is one attempt at one cluster's control plane.
type clusterRun struct {
	*run
	spec   ClusterSpec
	begin  time.Time
	dir    clusterDir
	ports  Ports
	cp     *k8sproc.ControlPlane
	client kubernetes.Interface
}

// A clusterStep is one named part of a cluster's start.
type clusterStep interface {
	Execute(ctx context.Context, c *clusterRun) error
}

// clusterSteps bring up one cluster's control plane, in order.
func clusterSteps() []clusterStep {
	return []clusterStep{prepareCluster{}, startEtcd{}, startAPIServer{}, startControllers{}, awaitServiceAccount{}}
}

// execute runs the cluster's steps; errors name the cluster.
func (c *clusterRun) execute(ctx context.Context) error {
	for _, s := range clusterSteps() {
		if err := s.Execute(ctx, c); err != nil {
			return fmt.Errorf("%s: %w", c.spec.Name, err)
		}
	}
	return nil
}

func (c *clusterRun) since() time.Duration { return time.Since(c.begin).Round(100 * time.Millisecond) }

// prepareCluster makes the cluster's directory afresh, picks its ports,
// writes its certificates and kubeconfigs, and records its API server in
// lab.json.
type prepareCluster struct{}

func (prepareCluster) Execute(_ context.Context, c *clusterRun) error {
	spec := c.spec
	c.dir = clusterDir(filepath.Join(c.o.StateDir, spec.Name))
	if err := os.RemoveAll(string(c.dir)); err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir.pki(""), 0o700); err != nil {
		return err
	}
	ps, err := k8sproc.FreePorts(5)
	if err != nil {
		return err
	}
	c.ports = Ports{EtcdClient: ps[0], EtcdPeer: ps[1], APIServer: ps[2], ControllerManager: ps[3], Scheduler: ps[4]}
	c.cp = controlPlane(c.o.BinDir, spec, c.dir, c.ports)
	c.cp.Started = func(p *k8sproc.Proc) error { return c.record(spec.Name, recordOf(p, c.ports.of(p.Component))) }
	c.cp.Note = func(what string, waited time.Duration, err error) { c.note(spec.Name, what)(waited, err) }
	server := c.cp.URL()
	pki, err := newClusterPKI(spec, c.dir, server)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	c.pkis.Store(spec.Name, pki)
	c.mu.Lock()
	cs := c.st.cluster(spec.Name)
	cs.ServiceCIDR, cs.Server, cs.Ports = spec.ServiceCIDR, server, c.ports
	err = c.st.save()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	admin := &rest.Config{Host: server, QPS: 50, Burst: 100, Timeout: 5 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: pki.CACert, CertData: pki.AdminCert, KeyData: pki.AdminKey}}
	c.client, err = kubernetes.NewForConfig(admin)
	return err
}

// startEtcd starts etcd and waits until it is healthy.
type startEtcd struct{}

func (startEtcd) Execute(ctx context.Context, c *clusterRun) error {
	if err := c.cp.StartEtcd(ctx); err != nil {
		return err
	}
	c.o.logf("%s: etcd up on 127.0.0.1:%d (%s)", c.spec.Name, c.ports.EtcdClient, c.since())
	return nil
}

// startAPIServer starts kube-apiserver and waits until it is ready.
type startAPIServer struct{}

func (startAPIServer) Execute(ctx context.Context, c *clusterRun) error {
	if err := c.cp.StartAPIServer(ctx, c.client); err != nil {
		return err
	}
	c.o.logf("%s: kube-apiserver ready at %s (%s)", c.spec.Name, c.cp.URL(), c.since())
	return nil
}

// startControllers starts kube-controller-manager and kube-scheduler and
// waits until both answer /healthz.
type startControllers struct{}

func (startControllers) Execute(ctx context.Context, c *clusterRun) error {
	kcm, sched := controllers(c.o.BinDir, c.spec, c.dir, c.ports)
	for _, cmd := range []command{kcm, sched} {
		if _, err := c.cp.Launch(cmd); err != nil {
			return err
		}
	}
	return c.cp.Wait(ctx, "kube-controller-manager and kube-scheduler /healthz", func(ctx context.Context) error {
		return errors.Join(componentHealthy(ctx, c.ports.ControllerManager), componentHealthy(ctx, c.ports.Scheduler))
	})
}

// awaitServiceAccount waits for the default ServiceAccount, which the
// controller manager makes: the cluster admits pods from then on.
type awaitServiceAccount struct{}

func (awaitServiceAccount) Execute(ctx context.Context, c *clusterRun) error {
	if err := c.cp.Wait(ctx, "the default ServiceAccount (made by kube-controller-manager)", func(ctx context.Context) error {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	c.o.logf("%s: kube-controller-manager and kube-scheduler running, default ServiceAccount made (%s)", c.spec.Name, c.since())
	return nil
}
