package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/clip"
	"github.com/horizonmesh/horizon/internal/ratelog"
)

// MaxRequestBytes bounds an AdmissionReview body. The API server's own
// limit on a pod is about 1.5 MiB of etcd value; real pods are a few KiB.
const MaxRequestBytes = 1 << 20

// Handler answers admission.k8s.io/v1 AdmissionReviews of pod creations:
// allowed with a JSONPatch when the pod is injected, allowed without one
// when it is not, refused (allowed: false, the reason in the message) when
// its injection annotations are invalid, its namespace cannot be looked
// up, or cfg is invalid. Anything that is not a well-formed AdmissionReview
// POSTed as JSON within MaxRequestBytes gets an HTTP error (400, 405, 413,
// 415) with a plain-text message; other kinds and operations are allowed
// unchanged.
//
// nsLookup returns the pod's namespace (the local cluster's informer); a
// nil namespace with a nil error counts as an unlabelled one.
func Handler(cfg Config, nsLookup func(name string) (*corev1.Namespace, error), log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, nsLookup: nsLookup, cfgErr: cfg.Validate(),
		// Whoever reaches the webhook port decides what is logged per
		// request: at most one line per message and namespace every 10 s.
		log: ratelog.New(log, ratelog.Options{Every: 10 * time.Second, KeyAttrs: []string{"namespace"}})}
	if h.cfgErr != nil {
		log.Error("sidecar injector misconfigured: every pod it is sent is refused", "err", h.cfgErr)
	}
	return h
}

type handler struct {
	cfg      Config
	cfgErr   error
	nsLookup func(string) (*corev1.Namespace, error)
	log      *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "sidecar injector: method "+r.Method+" not allowed, POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("sidecar injector: Content-Type %s, want application/json", clip.Quote(r.Header.Get("Content-Type"))), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("sidecar injector: request body over %d bytes", MaxRequestBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "sidecar injector: reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, "sidecar injector: malformed AdmissionReview: "+clip.String(err.Error()), http.StatusBadRequest)
		return
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		http.Error(w, fmt.Sprintf("sidecar injector: got apiVersion %s kind %s, want %s AdmissionReview",
			clip.Quote(review.APIVersion), clip.Quote(review.Kind), admissionv1.SchemeGroupVersion), http.StatusBadRequest)
		return
	}
	if review.Request == nil || review.Request.UID == "" {
		http.Error(w, "sidecar injector: AdmissionReview without a request or its uid", http.StatusBadRequest)
		return
	}
	resp := h.admit(review.Request)
	resp.UID = review.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		http.Error(w, "sidecar injector: encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func (h *handler) admit(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
		h.log.Debug("sidecar injector: not a pod creation, allowed unchanged", "kind", clip.String(req.Kind.Kind), "operation", clip.String(string(req.Operation)),
			"subresource", clip.String(req.SubResource))
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	if len(req.Object.Raw) == 0 {
		return refuse(http.StatusBadRequest, "sidecar injection: the request has no object")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return refuse(http.StatusBadRequest, "sidecar injection: the object is not a Pod: "+clip.String(err.Error()))
	}
	if h.cfgErr != nil {
		return refuse(http.StatusInternalServerError, "sidecar injection: "+h.cfgErr.Error())
	}
	nsName := req.Namespace
	if nsName == "" {
		nsName = pod.Namespace
	}
	// The pod's name and namespace as messages and logs show them: the
	// request is not validated yet, so they may be of any size.
	name := pod.Name
	if name == "" {
		name = pod.GenerateName
	}
	name, shownNS := clip.String(name), clip.String(nsName)
	if h.nsLookup == nil {
		return refuse(http.StatusInternalServerError, "sidecar injection: no namespace lookup configured")
	}
	ns, err := h.nsLookup(nsName)
	if err != nil {
		h.log.Warn("sidecar injector: namespace lookup failed; pod refused", "namespace", shownNS, "pod", name, "err", err)
		return refuse(http.StatusInternalServerError, fmt.Sprintf("sidecar injection: looking up namespace %s: %v", shownNS, err))
	}
	if ns == nil {
		ns = &corev1.Namespace{}
	}
	if ns.Name == "" {
		ns = ns.DeepCopy()
		ns.Name = nsName
	}
	r, err := inject(&pod, ns, h.cfg)
	if err != nil {
		h.log.Info("sidecar injector: pod refused", "namespace", shownNS, "pod", name, "err", err)
		return refuse(http.StatusBadRequest, "sidecar injection: "+err.Error())
	}
	if !r.injected {
		h.log.Debug("sidecar injector: not injected", "namespace", shownNS, "pod", name, "reason", r.reason)
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	patch, err := PodPatch(&pod, r.pod)
	if err != nil {
		return refuse(http.StatusInternalServerError, "sidecar injection: building the patch: "+err.Error())
	}
	h.log.Info("sidecar injected", "namespace", shownNS, "pod", name, "warnings", len(r.warnings))
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt, Warnings: r.warnings}
}

func refuse(code int32, msg string) *admissionv1.AdmissionResponse {
	reason := metav1.StatusReasonBadRequest
	if code == http.StatusInternalServerError {
		reason = metav1.StatusReasonInternalError
	}
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}
