// Package k8sproc runs real Kubernetes control-plane processes for the
// integration tests' kubeharness and `horizon lab` alike: the pinned
// releases, where scripts/k8s-bins.sh builds their binaries, the
// certificates and service-account keys the processes read (pki.go), and
// one launcher (controlplane.go: etcd's and kube-apiserver's command lines,
// starting them and waiting until they are ready, failing early with the
// log of one that exits; proc.go).
package k8sproc

import (
	"fmt"
	"os"
	"path/filepath"
)

// The releases pinned in tools/k8s/go.mod and tools/etcd/go.mod; they name
// the cache directory scripts/k8s-bins.sh builds into (a unit test in
// kubeharness keeps them in step).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.16"
)

// The binaries scripts/k8s-bins.sh builds.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kubectl               = "kubectl"
)

// BinDirEnv overrides DefaultBinDir.
const BinDirEnv = "HORIZON_K8S_BIN_DIR"

// BuildHint is the command that builds the binaries and points BinDirEnv at
// them.
const BuildHint = "export HORIZON_K8S_BIN_DIR=$(scripts/k8s-bins.sh | tail -1)"

// DefaultBinDir is where scripts/k8s-bins.sh builds by default:
// ${XDG_CACHE_HOME:-$HOME/.cache}/horizon/k8s-<version>-etcd-<version>.
func DefaultBinDir() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "horizon", "k8s-"+KubernetesVersion+"-etcd-"+EtcdVersion)
}

// BinDir is $HORIZON_K8S_BIN_DIR, else DefaultBinDir().
func BinDir() string {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir
	}
	return DefaultBinDir()
}

// CheckBinaries returns an error naming the first of names that is not an
// executable file in dir.
func CheckBinaries(dir string, names ...string) error {
	for _, b := range names {
		path := filepath.Join(dir, b)
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", path)
		}
	}
	return nil
}
