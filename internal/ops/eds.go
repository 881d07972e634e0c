package ops

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/horizonmesh/horizon/internal/clip"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// DefaultEDSLimit is how many resources one /debug/eds answer holds unless
// ?limit= says otherwise (at most MaxEDSLimit).
const (
	DefaultEDSLimit = 100
	MaxEDSLimit     = 1000
)

// eds shows what the proxies of ?network=N receive: the EDS view the
// control plane already holds for them, never a rebuild. ?cluster=C is
// validated as a proxy's CLUSTER_ID would be; with ?ips=A[,B] (a sidecar's
// INSTANCE_IPS) the view is the one of the workload the mesh has at those
// addresses in that cluster (its locality: see docs/architecture.md
// "Locality failover"), else the network's.
// ?name=CLUSTER gives one resource; otherwise resources come sorted by name,
// ?limit=N at a time (default DefaultEDSLimit); the answer's "next" is the
// ?after= of the following page. Resources are written one by one (a load
// assignment endpoint by endpoint), never built into one document.
func eds(cp *controlplane.ControlPlane, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := server.ProxyFromNode(nodeFor(q.Get("network"), q.Get("cluster"), q.Get("ips")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key, err := cp.Classify(resource.EndpointType, p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	limit := DefaultEDSLimit
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxEDSLimit {
			http.Error(w, fmt.Sprintf("limit must be a number from 1 to %d", MaxEDSLimit), http.StatusBadRequest)
			return
		}
	}
	view := server.View{TypeURL: resource.EndpointType, Key: key}
	res, version, ok := cp.Views.Resources(view)
	if !ok {
		http.Error(w, fmt.Sprintf("no EDS view %s: no proxy of network %s has asked for endpoints (views exist only for connected proxies); EDS views: %s",
			clip.Quote(key.String()), clip.Quote(p.Network), edsViews(cp)), http.StatusNotFound)
		return
	}
	var names []string
	if name := q.Get("name"); name != "" {
		if _, ok := res[name]; !ok {
			http.Error(w, fmt.Sprintf("no resource %s in EDS view %s", clip.Quote(name), clip.Quote(key.String())), http.StatusNotFound)
			return
		}
		names = []string{name}
	} else {
		after := q.Get("after")
		for n := range res {
			if n > after {
				names = append(names, n)
			}
		}
		slices.Sort(names)
	}
	var next string
	if len(names) > limit {
		names = names[:limit]
		next = names[limit-1]
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 32<<10)
	head, _ := json.Marshal(struct {
		View    string `json:"view"`
		Version string `json:"version"`
		Total   int    `json:"total"`
		Next    string `json:"next,omitempty"`
	}{view.String(), version, len(res), next})
	bw.Write(head[:len(head)-1])
	bw.WriteString(`,"resources":[`)
	enc := &encoder{w: bw}
	for i, n := range names {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
		if err := enc.resource(res[n]); err != nil {
			// The status is sent: end the document visibly broken.
			fmt.Fprintf(bw, "\nerror: %v\n", err)
			_ = bw.Flush() // the client may be gone; nothing more to tell it
			return
		}
		if enc.err != nil {
			return // the client went away
		}
	}
	bw.WriteString("\n]}\n")
	_ = bw.Flush()
}

// edsViews lists the existing EDS views' keys, sorted.
func edsViews(cp *controlplane.ControlPlane) string {
	var keys []string
	for _, v := range cp.Views.Views() {
		if v.TypeURL == resource.EndpointType {
			keys = append(keys, strconv.Quote(v.Key.String()))
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// streamed names the repeated fields written element by element, so that
// a load assignment of 100k endpoints is never rendered as one buffer.
var streamed = map[protoreflect.FullName]protoreflect.Name{
	"envoy.config.endpoint.v3.ClusterLoadAssignment": "endpoints",
	"envoy.config.endpoint.v3.LocalityLbEndpoints":   "lb_endpoints",
}

// encoder writes resources in proto3 JSON (compact) to w, reusing one
// buffer; err is the first write error.
type encoder struct {
	w   io.Writer
	buf []byte
	err error
}

func (e *encoder) write(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *encoder) resource(r types.Resource) error { return e.message(r.ProtoReflect()) }

func (e *encoder) message(m protoreflect.Message) error {
	field, ok := streamed[m.Descriptor().FullName()]
	fd := m.Descriptor().Fields().ByName(field)
	if !ok || fd == nil || !fd.IsList() || fd.Message() == nil {
		var err error
		if e.buf, err = (protojson.MarshalOptions{}).MarshalAppend(e.buf[:0], m.Interface()); err != nil {
			return fmt.Errorf("marshal %s: %w", m.Descriptor().FullName(), err)
		}
		e.write(e.buf)
		return nil
	}
	// The message without the streamed field, then the field's elements.
	shell := m.New()
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if f != fd {
			shell.Set(f, v)
		}
		return true
	})
	var err error
	if e.buf, err = (protojson.MarshalOptions{}).MarshalAppend(e.buf[:0], shell.Interface()); err != nil {
		return fmt.Errorf("marshal %s: %w", m.Descriptor().FullName(), err)
	}
	obj := bytes.TrimSpace(e.buf)
	obj = bytes.TrimSpace(obj[:len(obj)-1]) // drop the closing brace
	e.write(obj)
	if len(obj) > 1 {
		e.write([]byte(","))
	}
	e.write([]byte(strconv.Quote(fd.JSONName()) + ":["))
	list := m.Get(fd).List()
	for i := range list.Len() {
		if i > 0 {
			e.write([]byte(","))
		}
		if err := e.message(list.Get(i).Message()); err != nil {
			return err
		}
	}
	e.write([]byte("]}"))
	return nil
}
