package inject

import (
	"encoding/json"
	"net/http"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// FuzzHandler: whatever is POSTed, the handler answers (never panics) with
// an HTTP error or an AdmissionReview echoing the uid, and a patch it
// returns applies to the object it was sent.
func FuzzHandler(f *testing.F) {
	review := func(pod *corev1.Pod) []byte {
		raw, _ := json.Marshal(pod)
		b, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "fuzz", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Namespace: pod.Namespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}})
		return b
	}
	f.Add(review(sleepPod("sample")))
	f.Add(review(sleepPod("other")))
	f.Add(review(sleepPod("sample", func(p *corev1.Pod) {
		p.Annotations = map[string]string{ExcludeInboundPortsAnn: "8080,x", ExcludeOutboundPortsAnn: "5432"}
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}}
	})))
	f.Add(review(sleepPod("sample", func(p *corev1.Pod) { p.Labels = nil; p.Spec.Containers = nil })))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"sample","object":{"metadata":{"labels":{"a/b~c":"$(X)"}},"spec":{"containers":[{"name":"c"}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Pod"},"operation":"CREATE","object":null}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Pod"},"operation":"CREATE","object":[]}}`))
	f.Add([]byte(`{`))
	f.Add([]byte(``))
	h := Handler(cluster2(), lookup, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(h, body, "application/json")
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return
		case http.StatusOK:
		default:
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
		var in, out admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted a body that does not decode: %v", err)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("response %s: %v", rec.Body, err)
		}
		if out.Response.UID != in.Request.UID {
			t.Fatalf("uid %q, want %q", out.Response.UID, in.Request.UID)
		}
		if len(out.Response.Patch) == 0 {
			return
		}
		if !out.Response.Allowed {
			t.Fatal("a patch with a refusal")
		}
		// The patch is relative to the pod as this build encodes it.
		var pod corev1.Pod
		if err := json.Unmarshal(in.Request.Object.Raw, &pod); err != nil {
			t.Fatalf("patched an object that is not a pod: %v", err)
		}
		raw, _ := json.Marshal(&pod)
		patch, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatal(err)
		}
		got, err := patch.Apply(raw)
		if err != nil {
			t.Fatalf("patch does not apply: %v\n%s", err, out.Response.Patch)
		}
		var patched corev1.Pod
		if err := json.Unmarshal(got, &patched); err != nil {
			t.Fatal(err)
		}
		if !injected(&patched) {
			t.Fatal("patched pod is not marked injected")
		}
		// Re-injection changes nothing.
		if r, err := inject(&patched, namespaces[in.Request.Namespace], cluster2()); err != nil || r.injected {
			t.Fatalf("re-injection: %+v %v", r, err)
		}
	})
}

// FuzzCreatePatch: the patch between two JSON documents turns the first
// into the second.
func FuzzCreatePatch(f *testing.F) {
	f.Add(`{"a":[1,{"b":null}],"c/d":"x"}`, `{"a":[1,{"b":2},3],"e~f":{}}`)
	f.Add(`{"l":[1,2,3]}`, `{"l":[3]}`)
	f.Add(`{"a":1}`, `{"a":{"b":[]}}`)
	f.Fuzz(func(t *testing.T, a, b string) {
		var va, vb any
		if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
			return
		}
		// Documents are objects (pods); the library checking the result
		// does not replace a whole document by a scalar.
		if _, ok := va.(map[string]any); !ok {
			return
		}
		if _, ok := vb.(map[string]any); !ok {
			return
		}
		p, err := CreatePatch([]byte(a), []byte(b))
		if err != nil {
			return // e.g. two values in one string, which Unmarshal above refuses too
		}
		checkApplies(t, a, b, p)
	})
}
