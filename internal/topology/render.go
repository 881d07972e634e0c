package topology

import (
	"fmt"
	"html"
	"io"
	"strings"
	"text/tabwriter"
)

// Text writes t for a terminal.
func Text(w io.Writer, t Topology) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NETWORK\tCLUSTERS\tENDPOINTS\tGATEWAY\tCLUSTER\tFOUND BY")
	for _, n := range t.Networks {
		first := []string{n.Name, join(n.Clusters), fmt.Sprint(n.Endpoints)}
		if len(n.Gateways) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\n", first[0], first[1], first[2], "none")
		}
		for i, g := range n.Gateways {
			if i > 0 {
				first = []string{"", "", ""}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", first[0], first[1], first[2], g.Address, dash(g.Cluster), g.Found)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CLUSTER\tROLE\tSTATE\tNETWORKS")
	for _, c := range t.Clusters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, role(c), state(c), join(c.Networks))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SERVICE\tNETWORK\tENDPOINTS\tBEHIND GATEWAYS")
	for _, s := range t.Services {
		for i, n := range s.Networks {
			host := s.Hostname
			if i > 0 {
				host = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", host, n.Network, n.Endpoints, behind(n))
		}
	}
	return tw.Flush()
}

func behind(n ServiceNetwork) string {
	if len(n.Behind) == 0 {
		return "-"
	}
	var parts []string
	for _, b := range n.Behind {
		parts = append(parts, fmt.Sprintf("%s: %d", b.Gateway, b.Endpoints))
	}
	return strings.Join(parts, ", ")
}

func role(c Cluster) string {
	if !c.Reported {
		return "-"
	}
	if c.Local {
		return "local"
	}
	return "remote"
}

func state(c Cluster) string {
	switch {
	case !c.Reported:
		return "in the mesh (no status)"
	case c.Error != "":
		return "error: " + c.Error
	case c.Synced:
		return "synced"
	}
	return "not synced"
}

func join(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// SVG layout, in pixels.
const (
	colWidth  = 340
	margin    = 20
	lineH     = 18
	boxPad    = 10
	maxChars  = 50 // of a line in a network's column
	hostChars = 48
)

// SVG writes t as a standalone SVG picture: one column per network (its
// clusters, coloured by sync state, and its gateways), then a table of
// services with their endpoints on each network and behind each gateway.
func SVG(w io.Writer, t Topology) error {
	cols := max(1, len(t.Networks))
	width := 2*margin + cols*colWidth + 300
	var b strings.Builder
	y := margin + 20
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="title">Horizon mesh: %d networks, %d clusters, %d services</text>`+"\n",
		margin, y, len(t.Networks), len(t.Clusters), len(t.Services))
	clusters := map[string]Cluster{}
	for _, c := range t.Clusters {
		clusters[c.ID] = c
	}
	top := y + 20
	bottom := top
	for i, n := range t.Networks {
		x := margin + 300 + i*colWidth
		cy := top + boxPad + lineH
		var inner strings.Builder
		fmt.Fprintf(&inner, `<text x="%d" y="%d" class="net">%s</text>`+"\n", x+boxPad, cy, esc(n.Name))
		fmt.Fprintf(&inner, `<text x="%d" y="%d" class="small">%d endpoints</text>`+"\n", x+colWidth-110, cy, n.Endpoints)
		cy += 8
		for _, id := range n.Clusters {
			c := clusters[id]
			cls := "ok"
			switch {
			case !c.Reported:
				cls = "unknown"
			case !c.Synced || c.Error != "":
				cls = "bad"
			}
			fmt.Fprintf(&inner, `<rect x="%d" y="%d" width="%d" height="%d" rx="4" class="cluster %s"><title>%s</title></rect>`+"\n",
				x+boxPad, cy, colWidth-3*boxPad, lineH+6, cls, esc(state(c)))
			fmt.Fprintf(&inner, `<text x="%d" y="%d">%s — %s, %s</text>`+"\n", x+2*boxPad, cy+lineH, esc(id), role(c), esc(clip(state(c), 30)))
			cy += lineH + 12
		}
		if len(n.Gateways) == 0 {
			fmt.Fprintf(&inner, `<text x="%d" y="%d" class="warn">no gateway</text>`+"\n", x+boxPad, cy+lineH-4)
			cy += lineH
		}
		for _, g := range n.Gateways {
			fmt.Fprintf(&inner, `<g><title>%s</title><text x="%d" y="%d" class="gw">⇄ %s %s</text>`+"\n", esc(g.Found), x+boxPad, cy+lineH-4, esc(g.Address), esc(dash(g.Cluster)))
			cy += lineH
			// How it was found, a part a line ("label … on Service …",
			// "LoadBalancer status", "DNS name").
			for _, part := range strings.Split(g.Found, ", ") {
				fmt.Fprintf(&inner, `<text x="%d" y="%d" class="small">%s</text>`+"\n", x+2*boxPad, cy+lineH-6, esc(clip(part, maxChars)))
				cy += lineH - 4
			}
			inner.WriteString("</g>\n")
			cy += 4
		}
		cy += boxPad
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" rx="8" class="network"/>`+"\n", x, top, colWidth-boxPad, cy-top)
		b.WriteString(inner.String())
		bottom = max(bottom, cy)
	}
	// The services: one row each, a cell per network.
	y = bottom + 30
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="head">service</text>`+"\n", margin, y)
	col := map[string]int{}
	for i, n := range t.Networks {
		col[n.Name] = margin + 300 + i*colWidth
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="head">endpoints (behind gateways)</text>`+"\n", col[n.Name], y)
	}
	for _, s := range t.Services {
		y += lineH + 4
		fmt.Fprintf(&b, `<text x="%d" y="%d"><title>%s</title>%s</text>`+"\n", margin, y, esc(s.Hostname), esc(clip(s.Hostname, hostChars)))
		for _, n := range s.Networks {
			x, ok := col[n.Network]
			if !ok {
				continue
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d">%d%s</text>`+"\n", x, y, n.Endpoints, esc(behindShort(n)))
		}
	}
	height := y + margin + 10
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">
<style>
.title{font-size:18px;font-weight:bold}.net{font-size:15px;font-weight:bold}.head{font-weight:bold;fill:#444}
.small{font-size:11px;fill:#555}.network{fill:#f4f7fb;stroke:#7a8ca5}.cluster.ok{fill:#dff3e3;stroke:#3c9a52}
.cluster.bad{fill:#fbe0e0;stroke:#c0392b}.cluster.unknown{fill:#eee;stroke:#999}.gw{fill:#1f4e8c}.warn{fill:#c0392b;font-weight:bold}
</style>
<rect width="100%%" height="100%%" fill="white"/>
`, width, height, width, height)
	_, err := io.WriteString(w, b.String()+"</svg>\n")
	return err
}

func behindShort(n ServiceNetwork) string {
	if len(n.Behind) == 0 {
		return ""
	}
	var parts []string
	for _, b := range n.Behind {
		parts = append(parts, fmt.Sprintf("%s: %d", b.Gateway, b.Endpoints))
	}
	return " (" + clip(strings.Join(parts, ", "), maxChars-6) + ")"
}

func esc(s string) string { return html.EscapeString(s) }

// clip shortens s to n runes with an ellipsis.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
