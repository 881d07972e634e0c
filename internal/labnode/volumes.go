package labnode

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Tokens issues service-account tokens (the TokenRequest API), bound to the
// pod.
type Tokens interface {
	Token(ctx context.Context, pod *corev1.Pod, audience string, expirationSeconds int64) (token string, expires time.Time, err error)
}

// File is one file of a volume, its path relative to the volume's root.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode
}

// Volume is what a pod volume holds: an empty, writable directory
// (emptyDir) or files made from the API's objects. Expires, when set, is
// when its earliest token expires.
type Volume struct {
	Name     string
	EmptyDir bool
	Files    []File
	Expires  time.Time
}

const (
	defaultMode  = 0o644
	defaultTTL   = 3600 // seconds, as the API's default for projected tokens
	defaultSAAcc = "default"
)

// BuildVolume resolves volume v of pod into its files. A missing ConfigMap,
// Secret or key that is not optional is a *ConfigError.
func BuildVolume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, lookup Lookup, tokens Tokens) (*Volume, error) {
	out := &Volume{Name: v.Name}
	src := &v.VolumeSource
	var err error
	switch {
	case src.EmptyDir != nil:
		out.EmptyDir = true
	case src.ConfigMap != nil:
		out.Files, err = configMapFiles(ctx, pod, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, modeOr(src.ConfigMap.DefaultMode), lookup)
	case src.Secret != nil:
		out.Files, err = secretFiles(ctx, pod, src.Secret.SecretName, src.Secret.Items, src.Secret.Optional, modeOr(src.Secret.DefaultMode), lookup)
	case src.DownwardAPI != nil:
		out.Files, err = downwardFiles(pod, src.DownwardAPI.Items, modeOr(src.DownwardAPI.DefaultMode))
	case src.Projected != nil:
		mode := modeOr(src.Projected.DefaultMode)
		for _, ps := range src.Projected.Sources {
			var fs []File
			switch {
			case ps.ServiceAccountToken != nil:
				t := ps.ServiceAccountToken
				ttl := int64(defaultTTL)
				if t.ExpirationSeconds != nil {
					ttl = *t.ExpirationSeconds
				}
				tok, exp, terr := tokens.Token(ctx, pod, t.Audience, ttl)
				if terr != nil {
					return nil, &ConfigError{fmt.Sprintf("volume %q: service account token (audience %q): %v", v.Name, t.Audience, terr)}
				}
				if out.Expires.IsZero() || exp.Before(out.Expires) {
					out.Expires = exp
				}
				fs = []File{{Path: t.Path, Data: []byte(tok), Mode: mode}}
			case ps.ConfigMap != nil:
				fs, err = configMapFiles(ctx, pod, ps.ConfigMap.Name, ps.ConfigMap.Items, ps.ConfigMap.Optional, mode, lookup)
			case ps.Secret != nil:
				fs, err = secretFiles(ctx, pod, ps.Secret.Name, ps.Secret.Items, ps.Secret.Optional, mode, lookup)
			case ps.DownwardAPI != nil:
				fs, err = downwardFiles(pod, ps.DownwardAPI.Items, mode)
			default:
				err = fmt.Errorf("projected source %s is not supported by the lab node", volumeKind(&ps))
			}
			if err != nil {
				break
			}
			out.Files = append(out.Files, fs...)
		}
	default:
		err = fmt.Errorf("volume type %s is not supported by the lab node", volumeKind(src))
	}
	if err != nil {
		if _, ok := errors.AsType[*ConfigError](err); ok {
			return nil, &ConfigError{fmt.Sprintf("volume %q: %v", v.Name, err)}
		}
		return nil, fmt.Errorf("volume %q: %w", v.Name, err)
	}
	for _, f := range out.Files {
		if !safeRelPath(f.Path) {
			return nil, fmt.Errorf("volume %q: path %q must be relative and must not contain '..'", v.Name, f.Path)
		}
	}
	return out, nil
}

func modeOr(m *int32) os.FileMode {
	if m == nil {
		return defaultMode
	}
	return os.FileMode(*m) & 0o777
}

func itemMode(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & 0o777
}

func safeRelPath(p string) bool {
	if p == "" || filepath.IsAbs(p) {
		return false
	}
	return !slices.Contains(strings.Split(p, "/"), "..")
}

func keyFiles(kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, mode os.FileMode) ([]File, error) {
	var out []File
	if len(items) == 0 {
		for _, k := range slices.Sorted(maps.Keys(data)) {
			out = append(out, File{Path: k, Data: data[k], Mode: mode})
		}
		return out, nil
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			if isOptional(optional) {
				continue
			}
			return nil, &ConfigError{fmt.Sprintf("key %q not found in %s %q", it.Key, kind, name)}
		}
		out = append(out, File{Path: it.Path, Data: d, Mode: itemMode(it.Mode, mode)})
	}
	return out, nil
}

func configMapFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, mode os.FileMode, lookup Lookup) ([]File, error) {
	cm, err := lookup.ConfigMap(ctx, pod.Namespace, name)
	if err != nil {
		if isOptional(optional) && isNotFound(err) {
			return nil, nil
		}
		return nil, configErr(err, "configmap %q", name)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	maps.Copy(data, cm.BinaryData)
	return keyFiles("configmap", name, data, items, optional, mode)
}

func secretFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, mode os.FileMode, lookup Lookup) ([]File, error) {
	s, err := lookup.Secret(ctx, pod.Namespace, name)
	if err != nil {
		if isOptional(optional) && isNotFound(err) {
			return nil, nil
		}
		return nil, configErr(err, "secret %q", name)
	}
	return keyFiles("secret", name, s.Data, items, optional, mode)
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, mode os.FileMode) ([]File, error) {
	var out []File
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downwardAPI %s: only fieldRef is supported by the lab node", it.Path)
		}
		if !fieldPathSupported(it.FieldRef.FieldPath, true) {
			return nil, fmt.Errorf("downwardAPI %s: field path %q is not supported (supported: %s)", it.Path, it.FieldRef.FieldPath, strings.Join(volumeFieldPaths, ", "))
		}
		v, err := FieldValue(pod, it.FieldRef.FieldPath)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Path: it.Path, Data: []byte(v), Mode: itemMode(it.Mode, mode)})
	}
	return out, nil
}

// Write materialises the volume under dir (created 0755; an emptyDir is
// 0777 as the kubelet's): each file written to a temporary name and
// renamed, so a refresh never shows a half-written token; files no longer
// in the volume are removed. gid, when set, owns the files (fsGroup).
func (v *Volume) Write(dir string, gid *int64) error {
	mode := os.FileMode(0o755)
	if v.EmptyDir {
		mode = 0o777
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	if v.EmptyDir {
		return chgrp(dir, gid)
	}
	keep := map[string]bool{}
	for _, f := range v.Files {
		p := filepath.Join(dir, f.Path)
		keep[p] = true
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(p), ".."+filepath.Base(p)+".tmp")
		if err := os.WriteFile(tmp, f.Data, f.Mode); err != nil {
			return err
		}
		if err := os.Chmod(tmp, f.Mode); err != nil {
			return err
		}
		if err := chgrp(tmp, gid); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
	}
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || keep[p] {
			return err
		}
		return os.Remove(p)
	})
}

func chgrp(p string, gid *int64) error {
	if gid == nil {
		return nil
	}
	return os.Lchown(p, -1, int(*gid))
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
