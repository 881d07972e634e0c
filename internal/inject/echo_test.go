package inject

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A refused pod's 200 KB annotation (or name, or container name) is not
// echoed whole into the admission response or the injector's log: values
// are quoted by their first 64 bytes and their length.
func TestRefusalsDoNotEchoHugeValues(t *testing.T) {
	huge := strings.Repeat("x", 200<<10)
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		refused bool // for the huge value, which the refusal quotes
	}{
		{"inject annotation", sleepPod("sample", func(p *corev1.Pod) { p.Annotations = map[string]string{InjectLabel: huge} }), true},
		{"inject label", sleepPod("sample", func(p *corev1.Pod) { p.Labels[InjectLabel] = huge }), true},
		{"excluded inbound ports", sleepPod("sample", func(p *corev1.Pod) { p.Annotations = map[string]string{ExcludeInboundPortsAnn: "80," + huge} }), true},
		{"excluded outbound ports", sleepPod("sample", func(p *corev1.Pod) { p.Annotations = map[string]string{ExcludeOutboundPortsAnn: huge + ",80"} }), true},
		{"pod name", sleepPod("sample", func(p *corev1.Pod) {
			p.GenerateName = huge
			p.Annotations = map[string]string{ExcludeInboundPortsAnn: "junk"}
		}), false},
		{"namespace", sleepPod(huge), false},
		{"container name in warnings", sleepPod("sample", func(p *corev1.Pod) {
			c := &p.Spec.Containers[0]
			c.Name = huge
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(5000)}}}
			c.SecurityContext = &corev1.SecurityContext{RunAsUser: new(int64(1337))}
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(admissionv1.AdmissionReview{
				TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
				Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
					Namespace: tc.pod.Namespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
			})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			rec := post(Handler(cluster1(), lookup, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), body, "application/json")
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("HTTP %d: %v", rec.Code, err)
			}
			if tc.refused && (out.Response.Allowed || out.Response.Result == nil || !strings.Contains(out.Response.Result.Message, "bytes)")) {
				t.Errorf("want refused, quoting the value with its length: %.300v", out.Response.Result)
			}
			if out.Response.Result != nil && len(out.Response.Result.Message) > 512 {
				t.Errorf("refusal message of %d bytes: %.200s", len(out.Response.Result.Message), out.Response.Result.Message)
			}
			for _, w := range out.Response.Warnings {
				if len(w) > 512 {
					t.Errorf("warning of %d bytes: %.200s", len(w), w)
				}
			}
			if len(out.Response.Patch) == 0 && rec.Body.Len() > 2048 {
				t.Errorf("answer of %d bytes", rec.Body.Len())
			}
			if logs.Len() > 2048 {
				t.Errorf("log of %d bytes: %.300s", logs.Len(), logs.String())
			}
		})
	}
}
