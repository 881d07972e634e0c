package controlplane

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/internal/source"
)

// metrics are the control plane's Prometheus series, on its own registry.
type metrics struct {
	proxies       *prometheus.GaugeVec
	pushes        *prometheus.CounterVec
	pushLatency   prometheus.Histogram
	builds        *prometheus.CounterVec
	assignments   *prometheus.CounterVec
	nacks         *prometheus.CounterVec
	clusterSynced *prometheus.GaugeVec
	clusterErrors *prometheus.CounterVec
	meshNetErrors prometheus.Counter
	unsupported   prometheus.Counter
	reclassified  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, cp *ControlPlane) *metrics {
	m := &metrics{
		proxies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_xds_connected_proxies", Help: "Connected proxies by network.",
		}, []string{"network"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_xds_pushes_total", Help: "xDS responses sent, by type.",
		}, []string{"type"}),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "horizon_push_duration_seconds",
			Help:    "Time from the first change of a push to its views being updated (debounce included).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_xds_builds_total", Help: "Resource builds, by type: one per view that was rebuilt.",
		}, []string{"type"}),
		assignments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_eds_load_assignments_total",
			Help: "Sidecar EDS load assignments per view build: built (the service's endpoints changed) or reused.",
		}, []string{"result"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_xds_nacks_total", Help: "Config rejected by proxies, by type.",
		}, []string{"type"}),
		clusterSynced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "horizon_cluster_synced", Help: "1 when the cluster's sources have synced.",
		}, []string{"cluster"}),
		clusterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_cluster_errors_total", Help: "Errors joining or reading a cluster.",
		}, []string{"cluster"}),
		meshNetErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_meshnetworks_rejected_total", Help: "meshNetworks changes rejected as invalid.",
		}),
		reclassified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_xds_reclassified_total",
			Help: "Streams moved to another view of a type because their workload's served ports changed.",
		}),
		unsupported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "horizon_xds_unsupported_type_requests_total",
			Help: "Requests for resource types Horizon does not serve (left unanswered, the stream stays up).",
		}),
	}
	views := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "horizon_xds_views", Help: "xDS views held (each freed when its last stream closes).",
	}, func() float64 {
		if cp.Views == nil {
			return 0
		}
		return float64(len(cp.Views.Views()))
	})
	reg.MustRegister(views, m.unsupported, m.reclassified, m.proxies, m.pushes, m.pushLatency, m.builds, m.assignments, m.nacks, m.clusterSynced, m.clusterErrors, m.meshNetErrors,
		&lastEventCollector{cp: cp, desc: prometheus.NewDesc("horizon_cluster_last_event_age_seconds",
			"Seconds since the cluster's last source event.", []string{"cluster"}, nil)},
		&staleCollector{cp: cp, desc: prometheus.NewDesc("horizon_remote_cluster_stale_seconds",
			"Seconds since the remote cluster's API server stopped answering: how old the state it serves is (0 while it answers).",
			[]string{"cluster"}, nil)})
	return m
}

// staleCollector reports each remote cluster's staleness at scrape time.
type staleCollector struct {
	cp   *ControlPlane
	desc *prometheus.Desc
}

func (c *staleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *staleCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.cp.opts.Now()
	var out []prometheus.Metric
	c.cp.mu.Lock()
	for _, cl := range c.cp.clusters {
		if _, ok := cl.src.(source.Reachability); ok && !cl.local {
			out = append(out, prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, staleFor(cl, now).Seconds(), string(cl.id)))
		}
	}
	c.cp.mu.Unlock()
	for _, m := range out {
		ch <- m
	}
}

// lastEventCollector reports event ages at scrape time.
type lastEventCollector struct {
	cp   *ControlPlane
	desc *prometheus.Desc
}

func (c *lastEventCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lastEventCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.cp.Clusters() {
		if s.LastEvent.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, s.LastEventAgeSeconds, s.ID)
	}
}
