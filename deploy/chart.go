// Package deploy holds teeml's Helm chart (deploy/helm/teeml, embedded) and
// renders and lints it with the Helm Go SDK (helm.sh/helm/v4), so that tests
// and `teeml deploy` use exactly the chart users install.
//
// Nothing secret is in the chart: identities, keys and broker configuration
// are Secrets made from a workspace and referenced by name.
package deploy

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

//go:embed all:helm/teeml
var chartFS embed.FS

const chartRoot = "helm/teeml"

// ErrValues: values refused by the chart's schema or its templates.
var ErrValues = errors.New("chart values refused")

// Chart loads the embedded chart.
func Chart() (*chart.Chart, error) {
	var files []*archive.BufferedFile
	err := fs.WalkDir(chartFS, chartRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := chartFS.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(p, chartRoot+"/"), Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("deploy: chart: %w", err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("deploy: chart: %w", err)
	}
	return c, nil
}

// Rendered is one rendered template: its file name and YAML documents.
type Rendered struct {
	Name string
	YAML string
}

// Render renders the chart for release in namespace with values (merged
// over the chart's defaults and checked against values.schema.json), and
// returns the non-empty manifests sorted by file name.
func Render(values map[string]any, release, namespace string) ([]Rendered, error) {
	c, err := Chart()
	if err != nil {
		return nil, err
	}
	opts := common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValuesWithSchemaValidation(c, values, opts, common.DefaultCapabilities, false)
	if err != nil {
		return nil, fmt.Errorf("deploy: %s: %w", oneLine(err), ErrValues)
	}
	out, err := engine.Render(c, vals)
	if err != nil {
		return nil, fmt.Errorf("deploy: rendering: %s: %w", oneLine(err), ErrValues)
	}
	var res []Rendered
	for name, y := range out {
		if strings.TrimSpace(y) == "" || strings.HasSuffix(name, ".tpl") {
			continue
		}
		res = append(res, Rendered{Name: name, YAML: y})
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	return res, nil
}

// Lint runs Helm's chart linter (chart metadata, values and schema,
// templates rendered and parsed) with values and returns its messages.
// Any message of error severity is returned as an error too.
func Lint(values map[string]any, namespace string) ([]string, error) {
	dir, err := os.MkdirTemp("", "teeml-chart-")
	if err != nil {
		return nil, fmt.Errorf("deploy: lint: %w", err)
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "teeml")
	err = fs.WalkDir(chartFS, chartRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, chartRoot), "/")))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := chartFS.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("deploy: lint: %w", err)
	}
	l := lint.RunAll(root, values, namespace)
	var msgs []string
	var firstErr error
	for _, m := range l.Messages {
		msgs = append(msgs, m.Error())
		if m.Severity >= support.ErrorSev && firstErr == nil {
			firstErr = fmt.Errorf("deploy: lint: %s: %w", oneLine(m), ErrValues)
		}
	}
	return msgs, firstErr
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
