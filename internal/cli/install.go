package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/install"
)

// clusterFlags pick the cluster to install into, as kubectl does.
type clusterFlags struct {
	kubeconfig, context string
}

func (c clusterFlags) client() (*install.Client, error) {
	cfg, err := c.restConfig()
	if err != nil {
		return nil, err
	}
	return install.NewClient(cfg)
}

func newInstallCommand(stdout io.Writer) *cobra.Command {
	var s install.Settings
	var values, meshNetworks string
	var cf clusterFlags
	var dryRun, wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Apply what `manifest generate` renders to a cluster (server-side apply), and wait for it to roll out",
		Long: `install renders the same objects as ` + "`horizon manifest generate`" + ` (same flags, same -f values
file) and applies them with server-side apply (field manager "horizon"), adding Istio's
CRDs (from istio.io/api) the cluster lacks: Gateway when a Gateway is rendered, and
DestinationRule on a primary (its discovery follows DestinationRules). It is
idempotent: a second run reports every object unchanged. Nothing is applied when the
settings are invalid. It never takes over an object it did not create: an existing
namespace or istio ConfigMap gets only Horizon's fields (no force, no managed-by label, so
uninstall keeps it; a field another manager set otherwise fails the install), and any other
existing object without app.kubernetes.io/managed-by=horizon (such as Istio's istiod Service
with --istiod-service) is refused before anything is applied. With --wait it waits for the
Deployments to roll out (a remote cluster's gateway excepted: it is Ready only once
the primary has joined the cluster).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings, err := resolveSettings(cmd.Flags(), s, values, meshNetworks)
			if err != nil {
				return err
			}
			objs, err := renderUnstructured(settings)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			// Discovery looks the CRDs up when it starts: they must be
			// there first (a primary's discovery follows DestinationRules).
			var crds []string
			if settings.ExposeServices {
				crds = append(crds, install.GatewayCRDName)
			}
			if !settings.Remote {
				crds = append(crds, install.DestinationRuleCRDName)
			}
			if objs, err = c.WithIstioCRDs(ctx, objs, crds...); err != nil {
				return err
			}
			res, err := c.Apply(ctx, objs, dryRun, stdout)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d created, %d configured, %d unchanged\n", res.Created, res.Changed, res.Unchanged)
			if wait && !dryRun {
				waitFor, awaiting := install.AwaitingJoin(settings, objs)
				for _, u := range awaiting {
					fmt.Fprintf(stdout, "Deployment %s/%s: not waited for; it becomes Ready once the primary has joined this cluster (horizon create-remote-secret)\n",
						u.GetNamespace(), u.GetName())
				}
				return c.WaitRollout(ctx, waitFor, timeout, stdout)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	settingsFlags(fl, &s, &values, &meshNetworks)
	fl.StringVar(&cf.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&cf.context, "context", "", "kubeconfig context (default: the current one)")
	fl.BoolVar(&dryRun, "dry-run", false, "server-side dry run: the API server validates everything, nothing is stored")
	fl.BoolVar(&wait, "wait", true, "wait for the Deployments to roll out")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "bound on the whole install, rollout included")
	return cmd
}

func newUninstallCommand(stdout io.Writer) *cobra.Command {
	var cf clusterFlags
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Delete every object labelled app.kubernetes.io/managed-by=horizon (namespaces and the Gateway CRD are kept)",
		Long: `uninstall deletes the objects Horizon created: those labelled
app.kubernetes.io/managed-by=horizon, which install sets only on objects it creates.
Namespaces and the Gateway CRD are kept, and so is any object that existed before Horizon
(a namespace, Istio's istio ConfigMap), whose Horizon fields stay as they are.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Render everything there is, so that every kind the
			// installer can create is looked for, whatever was chosen.
			all := install.Defaults()
			all.Gateway, all.ExposeServices, all.MeshNetworks, all.IstiodService = true, true, "networks: {}\n", true
			objs, err := renderUnstructured(all)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			n, err := c.Uninstall(ctx, objs, stdout)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d deleted\n", n)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cf.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&cf.context, "context", "", "kubeconfig context (default: the current one)")
	return cmd
}

func renderUnstructured(s install.Settings) ([]*unstructured.Unstructured, error) {
	objs, err := install.Render(s)
	if err != nil {
		return nil, cmdutil.Usage(err)
	}
	return install.Unstructured(objs)
}
