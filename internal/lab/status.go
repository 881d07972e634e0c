package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/k8sproc"
)

// ErrNotUp is returned by Status when there is no lab in the state
// directory.
var ErrNotUp = errors.New("the lab is not up")

// Status writes each cluster's components (running, PID, port, health) and
// Pods to w. It fails, after writing everything, when a component is not
// running or not healthy.
func Status(ctx context.Context, opts Options, w io.Writer) error {
	o, err := opts.normalized()
	if err != nil {
		return err
	}
	st, err := LoadState(o.StateDir)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w (nothing in %s; start it with `horizon lab up`)", ErrNotUp, o.StateDir)
	}
	clients, cerr := Clients(o.StateDir)
	var problems []error
	for i, c := range st.Clusters {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s  %s  (service CIDR %s)\n", c.Name, c.Server, c.ServiceCIDR)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  COMPONENT\tSTATE\tPID\tPORT\tHEALTH")
		for _, p := range c.Processes {
			state, health := "running", ""
			if !p.Running() {
				state = "stopped"
				problems = append(problems, fmt.Errorf("%s: %s (pid %d) is not running; its log: %s", c.Name, p.Component, p.PID, p.Log))
			} else {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				herr := componentHealth(cctx, p, clients[c.Name], cerr)
				cancel()
				health = healthPath(p.Component) + " ok"
				if herr != nil {
					health = herr.Error()
					problems = append(problems, fmt.Errorf("%s: %s: %w", c.Name, p.Component, herr))
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\n", p.Component, state, p.PID, p.Port, health)
		}
		for _, want := range append(slices.Clone(Components), NodeComponent) {
			if !hasComponent(c.Processes, want) {
				fmt.Fprintf(tw, "  %s\tnot started\t\t\t\n", want)
				problems = append(problems, fmt.Errorf("%s: %s was never started", c.Name, want))
			}
		}
		_ = tw.Flush()
		if cerr != nil {
			fmt.Fprintf(w, "  pods: %v\n", cerr)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		pods, err := clients[c.Name].CoreV1().Pods(metav1.NamespaceAll).List(cctx, metav1.ListOptions{})
		cancel()
		if err != nil {
			fmt.Fprintf(w, "  pods: %v\n", err)
			problems = append(problems, fmt.Errorf("%s: listing Pods: %w", c.Name, err))
			continue
		}
		fmt.Fprintln(w)
		WritePods(w, pods.Items, time.Now(), "  ")
	}
	if len(problems) > 0 {
		return fmt.Errorf("the lab is not healthy:\n%w", errors.Join(problems...))
	}
	return nil
}

func hasComponent(ps []Process, c string) bool {
	for _, p := range ps {
		if p.Component == c {
			return true
		}
	}
	return false
}

func healthPath(component string) string {
	switch component {
	case NodeComponent:
		return "Node Ready"
	case k8sproc.Etcd:
		return "/health"
	case k8sproc.KubeAPIServer:
		return "/readyz"
	}
	return "/healthz"
}

func componentHealth(ctx context.Context, p Process, client kubernetes.Interface, clientErr error) error {
	switch p.Component {
	case NodeComponent:
		if clientErr != nil {
			return clientErr
		}
		for _, c := range Clusters {
			if strings.Contains(p.Log, string(filepath.Separator)+c.Name+string(filepath.Separator)) {
				return nodeReady(ctx, client, c)
			}
		}
		return nil
	case k8sproc.Etcd:
		return k8sproc.EtcdHealthy(ctx, url("http", p.Port))
	case k8sproc.KubeAPIServer:
		if clientErr != nil {
			return clientErr
		}
		return k8sproc.APIReady(ctx, client)
	}
	return componentHealthy(ctx, p.Port)
}

// WritePods writes pods as `kubectl get pods -A -o wide` would (its main
// columns), sorted by namespace and name, lines prefixed with indent.
func WritePods(w io.Writer, pods []corev1.Pod, now time.Time, indent string) {
	if len(pods) == 0 {
		fmt.Fprintf(w, "%sNo Pods.\n", indent)
		return
	}
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintf(tw, "%sNAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tAGE\tIP\tNODE\n", indent)
	for i := range pods {
		p := &pods[i]
		ready, restarts := 0, 0
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Ready {
				ready++
			}
			restarts += int(cs.RestartCount)
		}
		age := "<unknown>"
		if !p.CreationTimestamp.IsZero() {
			age = duration.HumanDuration(now.Sub(p.CreationTimestamp.Time))
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", indent, p.Namespace, p.Name, ready, len(p.Spec.Containers),
			PodStatus(p), strconv.Itoa(restarts), age, orNone(p.Status.PodIP), orNone(p.Spec.NodeName))
	}
	_ = tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// PodStatus is kubectl's STATUS column, simplified: Terminating, a waiting
// or terminated container's reason (init containers first, as
// Init:REASON), the Pod's reason, else its phase.
func PodStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	for _, cs := range p.Status.InitContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			return "Init:" + cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			return "Init:" + orDefault(cs.State.Terminated.Reason, "Error")
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			return cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			return cs.State.Terminated.Reason
		}
	}
	if p.Status.Reason != "" {
		return p.Status.Reason
	}
	if p.Status.Phase == "" {
		return string(corev1.PodPending)
	}
	return string(p.Status.Phase)
}

func orDefault(s, d string) string {
	if strings.TrimSpace(s) == "" {
		return d
	}
	return s
}
