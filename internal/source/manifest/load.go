package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
)

// maxDocument bounds one YAML document, so a runaway file cannot exhaust
// memory.
const maxDocument = 16 << 20

// Load reads path — a directory (every *.yaml, *.yml and *.json below it,
// in lexical order, skipping hidden files and directories) or one file — into
// a new Store. Unsupported kinds are warnings; malformed documents, objects
// without a name and objects defined twice are errors.
func Load(path string) (*kube.Store, model.Diagnostics) {
	l := &loader{store: kube.NewStore()}
	files, err := manifestFiles(path)
	if err != nil {
		l.diags.AddError(path, "", "", err.Error())
		return l.store, l.diags
	}
	for _, f := range files {
		l.file(f)
	}
	return l.store, l.diags
}

func manifestFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read cluster manifests: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != path && strings.HasPrefix(d.Name(), ".") {
			// Hidden entries: .git, editor files, and the ..data and
			// ..TIMESTAMP copies of a mounted ConfigMap, which would
			// otherwise define every object twice.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read cluster manifests: %w", err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, errors.New("no *.yaml, *.yml or *.json files in the directory")
	}
	return files, nil
}

type loader struct {
	store *kube.Store
	diags model.Diagnostics
}

func (l *loader) file(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.diags.AddError(path, "", "", err.Error())
		return
	}
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReaderSize(bytes.NewReader(data), 4096))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			l.diags.AddError(path, "", "", fmt.Sprintf("cannot split YAML documents: %v", err))
			return
		}
		if len(doc) > maxDocument {
			l.diags.AddError(path, "", "", fmt.Sprintf("document larger than %d bytes", maxDocument))
			return
		}
		docs = append(docs, doc)
	}
	for i, doc := range docs {
		origin := path
		if len(docs) > 1 {
			origin = fmt.Sprintf("%s#%d", path, i+1)
		}
		l.document(origin, doc)
	}
}

// document decodes one YAML document (an object or a v1 List) into the store.
func (l *loader) document(origin string, doc []byte) {
	if isEmptyDocument(doc) {
		return
	}
	var tm metav1.TypeMeta
	if err := utilyaml.Unmarshal(doc, &tm); err != nil {
		l.diags.AddError(origin, "", "", fmt.Sprintf("malformed YAML: %v", err))
		return
	}
	if tm.APIVersion == "v1" && tm.Kind == "List" {
		var list corev1.List
		if err := utilyaml.Unmarshal(doc, &list); err != nil {
			l.diags.AddError(origin, "List", "items", fmt.Sprintf("malformed list: %v", err))
			return
		}
		for i, item := range list.Items {
			l.object(fmt.Sprintf("%s: items[%d]", origin, i), item.Raw)
		}
		return
	}
	l.object(origin, doc)
}

func (l *loader) object(origin string, doc []byte) {
	var tm metav1.TypeMeta
	if err := utilyaml.Unmarshal(doc, &tm); err != nil {
		l.diags.AddError(origin, "", "", fmt.Sprintf("malformed YAML: %v", err))
		return
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		l.diags.AddError(origin, "", "apiVersion/kind", "object has no apiVersion or kind")
		return
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
	if runtime.IsNotRegisteredError(err) {
		l.diags.AddWarning(origin, tm.Kind, "", fmt.Sprintf("unsupported kind %s %s, ignored", tm.APIVersion, tm.Kind))
		return
	}
	if err != nil {
		l.diags.AddError(origin, bestEffortName(tm.Kind, doc), "", fmt.Sprintf("cannot decode %s %s: %v", tm.APIVersion, tm.Kind, err))
		return
	}
	if !kube.Supported(obj) {
		l.diags.AddWarning(origin, tm.Kind, "", fmt.Sprintf("unsupported kind %s %s, ignored", tm.APIVersion, tm.Kind))
		return
	}
	meta, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	what := objectName(tm.Kind, meta)
	if meta.GetName() == "" {
		l.diags.AddError(origin, tm.Kind, "metadata.name", "object has no name")
		return
	}
	switch {
	case namespaced(obj) && meta.GetNamespace() == "":
		meta.SetNamespace(metav1.NamespaceDefault)
		what = objectName(tm.Kind, meta)
	case !namespaced(obj) && meta.GetNamespace() != "":
		meta.SetNamespace("") // cluster-scoped: the API server ignores it too
		what = objectName(tm.Kind, meta)
	}
	if prev, dup := l.store.Origin(obj); dup {
		l.diags.AddError(origin, what, "metadata.name", fmt.Sprintf("defined twice (first in %s)", prev))
		return
	}
	l.store.Upsert(obj, origin)
}

// bestEffortName names an object that failed to decode, as far as its
// metadata can be read.
func bestEffortName(kind string, doc []byte) string {
	var partial struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if utilyaml.Unmarshal(doc, &partial) != nil || partial.Metadata.Name == "" {
		return kind
	}
	return strings.TrimSpace(kind + " " + strings.TrimPrefix(partial.Metadata.Namespace+"/"+partial.Metadata.Name, "/"))
}

func namespaced(obj runtime.Object) bool {
	switch obj.(type) {
	case *corev1.Namespace, *corev1.Node:
		return false
	}
	return true
}

func objectName(kind string, m metav1.Object) string {
	if m.GetNamespace() == "" {
		return kind + " " + m.GetName()
	}
	return kind + " " + m.GetNamespace() + "/" + m.GetName()
}

func isEmptyDocument(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			return false
		}
	}
	return true
}
