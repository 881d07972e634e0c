package ops

import (
	"bytes"
	"net/http"

	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/topology"
)

// topologyOf is the current mesh's topology with the clusters' states.
func topologyOf(cp *controlplane.ControlPlane) topology.Topology {
	var states []topology.ClusterState
	for _, c := range cp.Clusters() {
		states = append(states, topology.ClusterState{ID: c.ID, Local: c.Local, Synced: c.Synced, Error: c.Error})
	}
	return topology.Of(cp.Mesh(), states)
}

// TopologyRefresh is how often /ui/topology fetches the picture again.
const TopologyRefresh = "3000" // milliseconds

// topologyPage is /ui/topology: the SVG, fetched again every
// TopologyRefresh ms (one request at a time, through the /debug bound);
// a failed fetch keeps the last picture and says so.
const topologyPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Horizon topology</title>
<style>body{margin:0;font-family:sans-serif}#status{position:fixed;right:12px;top:8px;font-size:12px;color:#777}</style>
</head><body>
<div id="status">loading…</div>
<div id="picture"></div>
<script>
async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/ui/topology.svg", {cache: "no-store"});
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    document.getElementById("picture").innerHTML = await r.text();
    status.textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (e) {
    status.textContent = "not updated: " + e.message;
  }
  setTimeout(refresh, ` + TopologyRefresh + `);
}
refresh();
</script>
</body></html>
`

func topologyJSON(cp *controlplane.ControlPlane, w http.ResponseWriter, _ *http.Request) {
	if cp.Mesh() == nil {
		http.Error(w, "no mesh yet: waiting for the local cluster to sync", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, topologyOf(cp))
}

func topologySVG(cp *controlplane.ControlPlane, w http.ResponseWriter, _ *http.Request) {
	if cp.Mesh() == nil {
		http.Error(w, "no mesh yet: waiting for the local cluster to sync", http.StatusServiceUnavailable)
		return
	}
	var b bytes.Buffer
	if err := topology.SVG(&b, topologyOf(cp)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}

func topologyHTML(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(topologyPage))
}
