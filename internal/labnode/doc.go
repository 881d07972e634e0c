// Package labnode is a kubelet stand-in for `horizon lab` (issue 10): it
// registers a Node in one cluster and runs each Pod bound to it as local
// processes in the Pod's own network namespace on a given bridge.
//
// The Node (registration, heartbeats, the v1 Lease) and the Pod watch, the
// work queues and status writes are virtual-kubelet's node package
// (NodeController, PodController); this package is its PodLifecycleHandler
// and PodNotifier.
//
// The kubelet API (kubeletapi.go): virtual-kubelet's node/api handlers
// over this node's GetContainerLogs, RunInContainer, AttachToContainer and
// PortForward, served over TLS to the API server's client certificate only.
// Container output goes through pipes into a log per container run in the
// CRI format, rotated (logfile.go, logread.go).
//
// Pure pod-spec handling — Check (every unsupported field named by path),
// MapImage (images → local programs), Env (downward API, ConfigMap/Secret
// keys, $(VAR) expansion), BuildVolume (emptyDir, configMap, secret,
// projected service-account tokens/configMap/secret/downwardAPI,
// downwardAPI), PlanProbe, PlanContainer and Launch.Command — is in its own
// files with table-driven tests. The pod lifecycle (pod.go, prober.go:
// network, processes, probes, restarts, deletion) reaches this machine only
// through a Runtime (runtime.go: the iproute2 commands of a pod's network
// namespace, built with internal/netns; its containers' processes;
// connections from inside its namespace): ExecRuntime is the real one, and
// the lifecycle's unit tests run on a fake that needs no root
// (fakeruntime_test.go, pod_test.go).
//
// Mounts: every container process starts under `ip netns exec`, which gives
// it a private mount namespace (a slave of the host's: nothing mounted there
// shows outside and it all goes away with the last process). A small shell
// prologue bind-mounts each volume's directory (under the node's state
// directory) at its mountPath, read-only where asked. A mountPath that does
// not exist on this machine (/var/run/secrets/tokens) is made inside a
// writable overlay of its deepest existing parent (/run), the overlay's
// upper layer on a tmpfs — so the host's file system is never written
// outside the state directory. A mountPath whose only existing parent is /
// is refused.
//
// Accepted but not enforced: resources, seccomp/AppArmor/SELinux profiles,
// readOnlyRootFilesystem, allowPrivilegeEscalation, capabilities.drop (a
// root container keeps root's capabilities — the capture init container
// needs NET_ADMIN and NET_RAW — and a non-root one gets only its
// capabilities.add, as ambient capabilities), dnsPolicy/dnsConfig (Pods use
// the machine's resolver), imagePullPolicy/imagePullSecrets and scheduling
// fields. Processes see the host's PID namespace and root file system.
package labnode
