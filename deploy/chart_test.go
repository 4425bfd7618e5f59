package deploy_test

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/teeml/teeml/deploy"
)

// federation is a full set of values: aggregator, two collaborators, the
// broker with PostgreSQL and serving.
func federation() map[string]any {
	return map[string]any{
		"image": map[string]any{"repository": "registry.example/teeml", "digest": "sha256:" + strings.Repeat("ab", 32)},
		"collaborators": []any{
			map[string]any{"name": "col-1", "identitySecret": "teeml-col-1-identity", "dataClaim": "col-1-shard"},
			map[string]any{"name": "col-2", "identitySecret": "teeml-col-2-identity"},
		},
		"kms":     map[string]any{"enabled": true},
		"serving": map[string]any{"enabled": true},
	}
}

type object struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   map[string]any `yaml:"metadata"`
	Spec       map[string]any `yaml:"spec"`
	raw        string
}

func objects(t *testing.T, rs []deploy.Rendered) []object {
	t.Helper()
	var out []object
	for _, r := range rs {
		for _, doc := range strings.Split(r.YAML, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var o object
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", r.Name, err, doc)
			}
			if o.Kind == "" {
				continue
			}
			o.raw = doc
			out = append(out, o)
		}
	}
	return out
}

func TestRenderFederation(t *testing.T) {
	rs, err := deploy.Render(federation(), "fed", "teeml")
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, rs)
	kinds := map[string]int{}
	names := map[string]object{}
	for _, o := range objs {
		kinds[o.Kind]++
		names[o.Kind+"/"+o.Metadata["name"].(string)] = o
		if o.Kind == "Secret" || o.Kind == "ConfigMap" {
			t.Fatalf("the chart rendered a %s: nothing secret (or configurable trust) may live in it", o.Kind)
		}
	}
	want := map[string]int{"Deployment": 5, "Service": 4, "StatefulSet": 1, "NetworkPolicy": 5}
	for k, n := range want {
		if kinds[k] != n {
			t.Fatalf("%d %s objects, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	agg := names["Deployment/fed-aggregator"].raw
	for _, s := range []string{
		"image: registry.example/teeml@sha256:abab", `"--listen", ":50051"`, "path: /readyz", "path: /healthz",
		"sgx.intel.com/epc: \"512Mi\"", "sgx.intel.com/enclave: 1", "sgx.intel.com/provision: 1",
		"secretName: teeml-aggregator-identity", "mountPath: /etc/teeml/ws/pki/aggregator-key.pem",
		"runAsNonRoot: true", "readOnlyRootFilesystem: true", "automountServiceAccountToken: false",
	} {
		if !strings.Contains(agg, s) {
			t.Fatalf("aggregator Deployment lacks %q:\n%s", s, agg)
		}
	}
	col := names["Deployment/fed-col-1"].raw
	if !strings.Contains(col, "claimName: col-1-shard") || !strings.Contains(col, `"-n", "col-1"`) || strings.Contains(col, "readinessProbe") {
		t.Fatalf("col-1 Deployment:\n%s", col)
	}
	if strings.Contains(names["Deployment/fed-col-2"].raw, "claimName") {
		t.Fatal("col-2 has no data claim but mounts one")
	}
	// Only collaborators reach the aggregator's RA-TLS port.
	np := names["NetworkPolicy/fed-aggregator"].raw
	if !strings.Contains(np, "teeml.io/role: collaborator") || !strings.Contains(np, "port: 50051") {
		t.Fatalf("aggregator NetworkPolicy:\n%s", np)
	}
	deny := names["NetworkPolicy/fed-default-deny"]
	if _, has := deny.Spec["ingress"]; has || !strings.Contains(deny.raw, "Ingress") {
		t.Fatalf("default-deny policy:\n%s", deny.raw)
	}
	pg := names["NetworkPolicy/fed-kms-postgres"].raw
	if !strings.Contains(pg, "teeml.io/role: kms") || !strings.Contains(pg, "port: 5432") {
		t.Fatalf("postgres NetworkPolicy:\n%s", pg)
	}
}

func TestRenderConfidentialVM(t *testing.T) {
	v := federation()
	v["platform"] = map[string]any{"kind": "tdx", "runtimeClassName": "kata-qemu-tdx"}
	rs, err := deploy.Render(v, "fed", "teeml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects(t, rs) {
		if o.Kind != "Deployment" {
			continue
		}
		if strings.Contains(o.raw, "sgx.intel.com") || !strings.Contains(o.raw, "runtimeClassName: kata-qemu-tdx") {
			t.Fatalf("TDX pod %s:\n%s", o.Metadata["name"], o.raw)
		}
	}
}

// TestSchemaRefuses: broken values are refused by values.schema.json before
// anything is rendered, with a one-line reason.
func TestSchemaRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(map[string]any)
		want string
	}{
		{"port out of range", func(v map[string]any) { v["aggregator"] = map[string]any{"port": 70000} }, "aggregator"},
		{"port not a number", func(v map[string]any) { v["kms"] = map[string]any{"enabled": true, "port": "7443"} }, "kms"},
		{"collaborator without identity", func(v map[string]any) {
			v["collaborators"] = []any{map[string]any{"name": "col-1"}}
		}, "identitySecret"},
		{"empty identity secret", func(v map[string]any) { v["aggregator"] = map[string]any{"identitySecret": ""} }, "identitySecret"},
		{"bad party name", func(v map[string]any) {
			v["collaborators"] = []any{map[string]any{"name": "Col_1", "identitySecret": "x"}}
		}, "name"},
		{"tdx without runtime class", func(v map[string]any) { v["platform"] = map[string]any{"kind": "tdx"} }, "runtimeClassName"},
		{"unknown platform", func(v map[string]any) { v["platform"] = map[string]any{"kind": "sim"} }, "kind"},
		{"bad digest", func(v map[string]any) { v["image"] = map[string]any{"digest": "sha256:xyz"} }, "digest"},
		{"unknown key", func(v map[string]any) { v["aggregatr"] = map[string]any{} }, "aggregatr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := federation()
			tc.mod(v)
			_, err := deploy.Render(v, "fed", "teeml")
			if !errors.Is(err, deploy.ErrValues) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line naming %q", err, tc.want)
			}
		})
	}
}

func TestLintClean(t *testing.T) {
	msgs, err := deploy.Lint(federation(), "teeml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		// INFO (e.g. "icon is recommended") is advice; anything above is not.
		if !strings.HasPrefix(m, "[INFO]") {
			t.Fatalf("helm lint: %s", m)
		}
	}
	v := federation()
	v["aggregator"] = map[string]any{"port": 0}
	if _, err := deploy.Lint(v, "teeml"); err == nil {
		t.Fatal("lint accepted port 0")
	}
}
