// Package ops serves the control plane's operational HTTP endpoints:
// readiness, Prometheus metrics and debug views.
package ops

import (
	"net/http"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/xds/render"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// Handler returns the ops HTTP handler.
func Handler(cp *controlplane.ControlPlane, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !cp.Ready() {
			http.Error(w, "not ready: waiting for the local cluster to sync", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/clusters", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"clusters":          cp.Clusters(),
			"meshNetworksError": cp.MeshNetworksError(),
		})
	})
	mux.HandleFunc("GET /debug/syncz", func(w http.ResponseWriter, _ *http.Request) {
		versions := map[string]string{}
		for _, v := range cp.Views.Views() {
			versions[v.String()] = cp.Views.Version(v)
		}
		writeJSON(w, map[string]any{"streams": cp.Tracker.Streams(), "viewVersions": versions})
	})
	mux.HandleFunc("GET /debug/eds", func(w http.ResponseWriter, r *http.Request) { eds(cp, w, r) })
	return mux
}

// eds shows what the EDS view of ?network=N (and ?cluster=C, validated but,
// as EDS depends only on the network, not otherwise used) receives.
func eds(cp *controlplane.ControlPlane, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := server.ProxyFromNode(nodeFor(q.Get("network"), q.Get("cluster")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := cp.Classify(resource.EndpointType, p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m := cp.Mesh()
	if m == nil {
		http.Error(w, "no mesh built yet", http.StatusServiceUnavailable)
		return
	}
	list, err := render.Resources(translate.EDS(m, translate.EDSView{Network: p.Network}))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, list)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := render.Document("json", v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
