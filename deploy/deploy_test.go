// Package deploy holds the systemd units and Kubernetes manifests; its test
// decodes each manifest strictly into the Kubernetes API types (there is no
// cluster here) and checks what the agents and the monitor rely on.
package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/probe-dev/probe/monitor"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// objects decodes every document of every manifest, refusing unknown
// fields, by kind.
func objects(t *testing.T) map[string][]any {
	t.Helper()
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests in k8s/")
	}
	out := map[string][]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var meta struct{ APIVersion, Kind string }
			json.Unmarshal(js, &meta)
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "v1 PersistentVolumeClaim":
				obj = &corev1.PersistentVolumeClaim{}
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "v1 Namespace":
				obj = &corev1.Namespace{}
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, meta.APIVersion, meta.Kind)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, meta.Kind, err)
			}
			out[meta.Kind] = append(out[meta.Kind], obj)
		}
	}
	return out
}

func TestAgentDaemonSet(t *testing.T) {
	objs := objects(t)
	if len(objs["DaemonSet"]) != 1 {
		t.Fatalf("%d DaemonSets", len(objs["DaemonSet"]))
	}
	ds := objs["DaemonSet"][0].(*appsv1.DaemonSet)
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("agents must run in the node's network namespace (hostNetwork)")
	}
	if ds.Spec.Selector == nil || ds.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != ds.Spec.Template.Labels["app.kubernetes.io/name"] {
		t.Error("the selector does not match the pod template's labels")
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	for _, want := range []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN"} {
		if !slices.Contains(sc.Capabilities.Add, want) {
			t.Errorf("capability %s missing: %v", want, sc.Capabilities.Add)
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	host := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			host[v.Name] = v.HostPath.Path
		}
	}
	for _, p := range []string{"/sys/fs/bpf", "/sys/kernel/btf"} {
		if host[mounts[p]] != p {
			t.Errorf("%s is not mounted from the host's %s", p, p)
		}
	}
	if !slices.Contains(c.Args, "serve") || c.Ports[0].ContainerPort != 7323 {
		t.Errorf("agent args %v, ports %v", c.Args, c.Ports)
	}
}

func TestMonitorDeployment(t *testing.T) {
	objs := objects(t)
	if len(objs["Deployment"]) != 1 || len(objs["PersistentVolumeClaim"]) != 1 || len(objs["ConfigMap"]) != 1 {
		t.Fatalf("want one Deployment, PVC and ConfigMap: %d, %d, %d", len(objs["Deployment"]), len(objs["PersistentVolumeClaim"]), len(objs["ConfigMap"]))
	}
	d := objs["Deployment"][0].(*appsv1.Deployment)
	pvc := objs["PersistentVolumeClaim"][0].(*corev1.PersistentVolumeClaim)
	cm := objs["ConfigMap"][0].(*corev1.ConfigMap)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Error("one SQLite writer: want replicas 1 and the Recreate strategy")
	}
	spec := d.Spec.Template.Spec
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	c := spec.Containers[0]
	var archiveDir, configDir string
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		switch {
		case v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name:
			archiveDir = m.MountPath
		case v.ConfigMap != nil && v.ConfigMap.Name == cm.Name:
			configDir = m.MountPath
		}
	}
	if archiveDir == "" || configDir == "" {
		t.Fatalf("the archive claim or the config map is not mounted (%q, %q)", archiveDir, configDir)
	}
	// The config must parse as the monitor reads it, keep its archive on
	// the claim and serve /metrics where the annotations say.
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, bytes.Repeat([]byte("k"), 32), 0o600)
	y := strings.ReplaceAll(cm.Data["monitor.yaml"], "/etc/probe/key", key)
	cfg, err := monitor.ParseConfig([]byte(y), configDir)
	if err != nil {
		t.Fatalf("the config map's monitor.yaml: %v", err)
	}
	if filepath.Dir(cfg.Archive) != archiveDir {
		t.Errorf("archive %s is not on the claim mounted at %s", cfg.Archive, archiveDir)
	}
	if !slices.Contains(c.Args, filepath.Join(configDir, "monitor.yaml")) {
		t.Errorf("args %v do not name the mounted config", c.Args)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || !strings.HasSuffix(cfg.Listen, ":"+ann["prometheus.io/port"]) {
		t.Errorf("scrape annotations %v against listen %s", ann, cfg.Listen)
	}
	ports := map[int32]bool{}
	for _, p := range c.Ports {
		ports[p.ContainerPort] = true
	}
	if !ports[9470] || !ports[9471] {
		t.Errorf("container ports %v", c.Ports)
	}
}

// TestSystemdUnits has systemd check the units, when it is installed.
func TestSystemdUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze")
	}
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 2 {
		t.Fatalf("%d units", len(units))
	}
	out, _ := exec.Command(sa, append([]string{"verify"}, units...)...).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		// The binary is not installed here; anything else is a fault.
		if strings.Contains(l, "probe-") && !strings.Contains(l, "is not executable") {
			t.Errorf("systemd-analyze: %s", l)
		}
	}
}
