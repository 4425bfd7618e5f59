package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/deploy"
)

// manifests decodes a YAML stream into objects ready to be sent as JSON.
func manifests(t *testing.T, name, stream string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range strings.Split("\n"+stream, "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
		}
		if o == nil { // a document of comments only
			continue
		}
		// Round-trip through JSON: yaml.v3 gives map[string]any all the
		// way down for string keys, and this proves it.
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatalf("%s: not representable as JSON: %v", name, err)
		}
		var j map[string]any
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

func copyObject(t *testing.T, o map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// at walks o along keys (map keys, or "0" for a list's first element).
func at(t *testing.T, o map[string]any, keys ...string) map[string]any {
	t.Helper()
	var cur any = o
	for _, k := range keys {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[k]
		case []any:
			if k != "0" || len(c) == 0 {
				t.Fatalf("at %v: list step %q", keys, k)
			}
			cur = c[0]
		default:
			t.Fatalf("at %v: %q of a %T", keys, k, cur)
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("at %v: a %T, not an object", keys, cur)
	}
	return m
}

func status(ans map[string]any) string {
	return fmt.Sprintf("%v %v: %v", ans["status"], ans["reason"], ans["message"])
}

// TestChartAcceptedByAPIServer creates every object the chart renders —
// and the identity Secrets of a workspace — in a fresh namespace of a
// real kube-apiserver (etcd-backed, strict field validation), for the SGX
// federation made from a workspace with the broker and serving on, and for
// confidential-VM pods. Then it shows the server refusing broken objects.
func TestChartAcceptedByAPIServer(t *testing.T) {
	k := startKube(t)

	ws := workspace(t, "gramine")
	f := deploy.Federation{Workspace: ws, Aggregator: "aggregator", AggregatorPort: 50443, Collaborators: []string{"col-1", "col-2"},
		Image: "registry.example/teeml@sha256:" + strings.Repeat("cd", 32), Platform: "sgx"}
	sgx, err := deploy.Values(f)
	if err != nil {
		t.Fatal(err)
	}
	sgx["kms"] = map[string]any{"enabled": true}
	sgx["serving"] = map[string]any{"enabled": true}
	tdx := federation()
	tdx["platform"] = map[string]any{"kind": "tdx", "runtimeClassName": "kata-qemu-tdx"}

	var aggregator map[string]any
	for _, tc := range []struct {
		namespace string
		values    map[string]any
		secrets   bool
		want      map[string]int
	}{
		{"fed-sgx", sgx, true, map[string]int{"Secret": 3, "Deployment": 5, "Service": 4, "StatefulSet": 1, "NetworkPolicy": 5}},
		{"fed-tdx", tdx, false, map[string]int{"Deployment": 5, "Service": 4, "StatefulSet": 1, "NetworkPolicy": 5}},
	} {
		t.Run(tc.namespace, func(t *testing.T) {
			code, ans := k.create(t, "", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": tc.namespace}})
			if code != http.StatusCreated {
				t.Fatalf("namespace %s: HTTP %d: %s", tc.namespace, code, status(ans))
			}
			var objs []map[string]any
			if tc.secrets {
				sec, err := deploy.Secrets(f, tc.namespace)
				if err != nil {
					t.Fatal(err)
				}
				objs = append(objs, manifests(t, "secrets.yaml", string(sec))...)
			}
			rs, err := deploy.Render(tc.values, "fed", tc.namespace)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				objs = append(objs, manifests(t, r.Name, r.YAML)...)
			}
			got := map[string]int{}
			for _, o := range objs {
				kind, _ := o["kind"].(string)
				name, _ := at(t, o, "metadata")["name"].(string)
				code, ans := k.create(t, tc.namespace, o)
				if code != http.StatusCreated {
					t.Fatalf("%s %s refused: HTTP %d: %s", kind, name, code, status(ans))
				}
				if ans["kind"] != kind || at(t, ans, "metadata")["namespace"] != tc.namespace || at(t, ans, "metadata")["uid"] == nil {
					t.Fatalf("%s %s: the server stored %v", kind, name, ans["metadata"])
				}
				got[kind]++
				if kind == "Deployment" && name == "fed-aggregator" && tc.secrets {
					aggregator = o
				}
			}
			for kd, n := range tc.want {
				if got[kd] != n {
					t.Fatalf("created %d %s, want %d (all: %v)", got[kd], kd, n, got)
				}
			}
			// Read one back: what the pods would run with is what was sent.
			code, dep := k.do(t, http.MethodGet, "/apis/apps/v1/namespaces/"+tc.namespace+"/deployments/fed-aggregator", nil)
			if code != http.StatusOK {
				t.Fatalf("GET aggregator: HTTP %d: %s", code, status(dep))
			}
			pod := at(t, dep, "spec", "template", "spec")
			c := at(t, pod, "containers", "0")
			lim, _ := at(t, c, "resources")["limits"].(map[string]any)
			switch tc.namespace {
			case "fed-sgx":
				if c["image"] != f.Image || lim["sgx.intel.com/epc"] != "512Mi" || lim["sgx.intel.com/enclave"] != "1" {
					t.Fatalf("stored aggregator container: image %v limits %v", c["image"], lim)
				}
			case "fed-tdx":
				if pod["runtimeClassName"] != "kata-qemu-tdx" || lim["sgx.intel.com/epc"] != nil {
					t.Fatalf("stored TDX pod: runtimeClassName %v limits %v", pod["runtimeClassName"], lim)
				}
			}
		})
	}
	if aggregator == nil {
		t.Fatal("no aggregator Deployment was created")
	}

	// The same Deployment, broken one way each, is refused by the server's
	// validation or decoding; renamed so that a refusal cannot be
	// "already exists".
	for _, tc := range []struct {
		name   string
		code   int
		want   string
		mutate func(o map[string]any)
	}{
		{"port out of range", http.StatusUnprocessableEntity, "containerPort", func(o map[string]any) {
			at(t, o, "spec", "template", "spec", "containers", "0", "ports", "0")["containerPort"] = 70000
		}},
		{"port not a number", http.StatusBadRequest, "containerPort", func(o map[string]any) {
			at(t, o, "spec", "template", "spec", "containers", "0", "ports", "0")["containerPort"] = "fifty"
		}},
		{"missing identity secret", http.StatusUnprocessableEntity, "secretName", func(o map[string]any) {
			for _, v := range at(t, o, "spec", "template", "spec")["volumes"].([]any) {
				if s, ok := v.(map[string]any)["secret"].(map[string]any); ok {
					s["secretName"] = ""
				}
			}
		}},
		{"unknown field", http.StatusBadRequest, "portz", func(o map[string]any) {
			at(t, o, "spec", "template", "spec", "containers", "0")["portz"] = []any{}
		}},
		{"selector not matching the pod labels", http.StatusUnprocessableEntity, "selector", func(o map[string]any) {
			at(t, o, "spec", "selector")["matchLabels"] = map[string]any{"teeml.io/role": "nobody"}
		}},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			o := copyObject(t, aggregator)
			at(t, o, "metadata")["name"] = "fed-broken"
			tc.mutate(o)
			code, ans := k.create(t, "fed-sgx", o)
			if code != tc.code || !strings.Contains(fmt.Sprint(ans["message"]), tc.want) {
				t.Fatalf("HTTP %d (%s), want %d naming %q", code, status(ans), tc.code, tc.want)
			}
		})
	}
}
