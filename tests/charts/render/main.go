// Command render renders a Helm 3 chart the way `helm template` does, for the chart test.
//
// Why it exists: Helm is not packaged in Debian 12 and this project installs nothing from
// outside Debian's archive and npm, so the chart test cannot run the real helm. This program
// implements the part of Helm's rendering that charts/loupe uses, on the same template engine
// (Go's text/template) and the same function library (sprig), both from Debian packages:
//
//   - values.yaml deep-merged with -f files (in order) and --set a.b=c (last), a null removing
//     a default, numbers read as float64 the way Helm's YAML-through-JSON reader does;
//   - .Values, .Release (Name, Namespace, Service, IsInstall, IsUpgrade, Revision), .Chart
//     (Chart.yaml with Helm's capitalised field names), .Template, .Capabilities
//     (KubeVersion, APIVersions.Has), and the Chart.yaml kubeVersion constraint;
//   - the functions Helm adds to sprig: include, tpl, required, toYaml, fromYaml, toJson,
//     fromJson, lookup (always empty, as in `helm template`); env and expandenv are removed;
//   - _*.tpl partials are parsed, not rendered; NOTES.txt only with -notes; output is one
//     "---\n# Source: <chart>/templates/<file>" block per non-empty document.
//
// Not implemented: subcharts, .Files, hooks ordering, --set-string/--set-json/--set-file,
// and values.schema.json validation (the Node test does that on the -values-json output).
//
// Build (GOPATH mode, Debian's golang-go, golang-github-masterminds-sprig-dev and
// golang-gopkg-yaml.v3-dev, offline):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var valueFiles, sets, apiVersions listFlag
	name := flag.String("name", "loupe", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "release namespace (.Release.Namespace)")
	flag.StringVar(namespace, "n", "default", "same as -namespace")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version (.Capabilities.KubeVersion)")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	valuesJSON := flag.Bool("values-json", false, "print the merged values as JSON instead of the manifests")
	flag.Var(&valueFiles, "f", "values file (repeatable, later files win)")
	flag.Var(&valueFiles, "values", "same as -f")
	flag.Var(&sets, "set", "a.b=c[,x=y] (repeatable, applied after the files)")
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: render [flags] CHART_DIR\n")
		flag.PrintDefaults()
	}
	// Flags may follow the chart directory, as with helm.
	var positional []string
	for args := os.Args[1:]; ; {
		flag.CommandLine.Parse(args) // exits on a bad flag (ExitOnError)
		if flag.NArg() == 0 {
			break
		}
		positional = append(positional, flag.Arg(0))
		args = flag.Args()[1:]
	}
	if len(positional) != 1 {
		flag.Usage()
		os.Exit(2)
	}
	out, err := run(positional[0], options{
		releaseName: *name, namespace: *namespace, kubeVersion: *kubeVersion,
		valueFiles: valueFiles, sets: sets, apiVersions: apiVersions,
		notes: *notes, valuesJSON: *valuesJSON,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

type options struct {
	releaseName, namespace, kubeVersion string
	valueFiles, sets, apiVersions       []string
	notes, valuesJSON                   bool
}

func run(chartDir string, o options) (string, error) {
	meta, err := loadChartMetadata(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	caps, err := newCapabilities(o.kubeVersion, o.apiVersions)
	if err != nil {
		return "", err
	}
	if constraint, ok := meta["KubeVersion"].(string); ok && constraint != "" {
		c, err := semver.NewConstraint(constraint)
		if err != nil {
			return "", fmt.Errorf("Chart.yaml: kubeVersion %q: %v", constraint, err)
		}
		if !c.Check(caps.kube) {
			return "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
				constraint, caps.KubeVersion.Version)
		}
	}
	values, err := buildValues(chartDir, o.valueFiles, o.sets)
	if err != nil {
		return "", err
	}
	if o.valuesJSON {
		b, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return "", err
		}
		return string(b) + "\n", nil
	}
	return renderTemplates(chartDir, meta, values, caps, o)
}

// --- Chart.yaml -------------------------------------------------------------------------------

func loadChartMetadata(file string) (map[string]interface{}, error) {
	raw, err := readYAMLMap(file)
	if err != nil {
		return nil, err
	}
	if raw["apiVersion"] != "v2" {
		return nil, fmt.Errorf("%s: apiVersion must be v2 (Helm 3), got %v", file, raw["apiVersion"])
	}
	for _, key := range []string{"name", "version"} {
		if s, _ := raw[key].(string); s == "" {
			return nil, fmt.Errorf("%s: %s is required", file, key)
		}
	}
	if _, err := semver.StrictNewVersion(raw["version"].(string)); err != nil {
		return nil, fmt.Errorf("%s: version %q is not SemVer 2: %v", file, raw["version"], err)
	}
	// Helm exposes chart.Metadata, whose Go fields are the YAML keys capitalised.
	meta := map[string]interface{}{}
	for k, v := range raw {
		switch k {
		case "apiVersion":
			meta["APIVersion"] = v
		default:
			meta[strings.ToUpper(k[:1])+k[1:]] = v
		}
	}
	return meta, nil
}

// --- Capabilities -----------------------------------------------------------------------------

type kubeVersionInfo struct {
	Version, Major, Minor, GitVersion string
}

func (k kubeVersionInfo) String() string { return k.Version }

type apiVersionSet []string

// Has is what templates call: .Capabilities.APIVersions.Has "apps/v1".
func (s apiVersionSet) Has(v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type capabilities struct {
	KubeVersion kubeVersionInfo
	APIVersions apiVersionSet
	kube        *semver.Version
}

func newCapabilities(version string, extra []string) (*capabilities, error) {
	v, err := semver.NewVersion(version)
	if err != nil {
		return nil, fmt.Errorf("-kube-version %q: %v", version, err)
	}
	canonical := "v" + v.String()
	// The built-in groups of any supported Kubernetes; CRDs come from -api-versions.
	apis := apiVersionSet{"v1", "apps/v1", "batch/v1", "policy/v1", "rbac.authorization.k8s.io/v1",
		"networking.k8s.io/v1", "storage.k8s.io/v1", "scheduling.k8s.io/v1",
		"apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1", "coordination.k8s.io/v1"}
	apis = append(apis, extra...)
	return &capabilities{
		KubeVersion: kubeVersionInfo{Version: canonical, GitVersion: canonical,
			Major: strconv.FormatUint(v.Major(), 10), Minor: strconv.FormatUint(v.Minor(), 10)},
		APIVersions: apis,
		kube:        v,
	}, nil
}

// --- Values -----------------------------------------------------------------------------------

func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	// Helm reads YAML through JSON (sigs.k8s.io/yaml): every number becomes a float64 and
	// every key a string. Do the same so that templates meet the same types.
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	var m map[string]interface{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: the top level must be a map", file)
	}
	return m, nil
}

func buildValues(chartDir string, files, sets []string) (map[string]interface{}, error) {
	defaults, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	user := map[string]interface{}{}
	for _, f := range files {
		m, err := readYAMLMap(f)
		if err != nil {
			return nil, err
		}
		user = mergeMaps(user, m)
	}
	for _, s := range sets {
		if err := parseSet(s, user); err != nil {
			return nil, fmt.Errorf("failed parsing --set data: %v", err)
		}
	}
	return coalesce(user, defaults), nil
}

// mergeMaps merges b into a copy of a, recursively; b wins (Helm's MergeValues for -f).
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]interface{}); ok {
			if am, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce lays the user's values over the chart's defaults: maps merge, anything else is
// replaced, and a null removes the default (Helm's CoalesceValues).
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, uIsMap := v.(map[string]interface{})
		dm, dIsMap := out[k].(map[string]interface{})
		if uIsMap && dIsMap {
			out[k] = coalesce(um, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

// parseSet applies one --set argument: a.b=c, several separated by commas, {x,y} for a list,
// name[0]=v for a list element, \ to escape , = . and {. Values are typed as Helm's strvals
// does: true/false, null, integers (int64); everything else, floats included, is a string.
func parseSet(arg string, into map[string]interface{}) error {
	for _, assignment := range splitUnescaped(arg, ',', true) {
		eq := indexUnescaped(assignment, '=')
		if eq < 0 {
			return fmt.Errorf("key %q has no value", assignment)
		}
		key, raw := assignment[:eq], assignment[eq+1:]
		var value interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			items := []interface{}{}
			if inner := raw[1 : len(raw)-1]; inner != "" {
				for _, item := range splitUnescaped(inner, ',', false) {
					items = append(items, typedValue(unescape(item)))
				}
			}
			value = items
		} else {
			value = typedValue(unescape(raw))
		}
		if err := setPath(into, splitUnescaped(key, '.', false), value); err != nil {
			return fmt.Errorf("%s: %v", key, err)
		}
	}
	return nil
}

func typedValue(s string) interface{} {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	// Helm keeps "0123" a string (leading zeros) and makes other integers int64.
	if len(s) > 1 && s[0] == '0' {
		return s
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i
	}
	return s
}

var indexRe = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

func setPath(m map[string]interface{}, keys []string, value interface{}) error {
	raw := keys[0]
	last := len(keys) == 1
	if match := indexRe.FindStringSubmatch(raw); match != nil {
		name := unescape(match[1])
		idx, _ := strconv.Atoi(match[2])
		if idx > 10000 {
			return fmt.Errorf("index %d is too large", idx)
		}
		list, _ := m[name].([]interface{})
		for len(list) <= idx {
			list = append(list, nil)
		}
		if last {
			list[idx] = value
		} else {
			child, ok := list[idx].(map[string]interface{})
			if !ok {
				child = map[string]interface{}{}
			}
			if err := setPath(child, keys[1:], value); err != nil {
				return err
			}
			list[idx] = child
		}
		m[name] = list
		return nil
	}
	name := unescape(raw)
	if name == "" {
		return errors.New("empty key")
	}
	if last {
		m[name] = value
		return nil
	}
	child, ok := m[name].(map[string]interface{})
	if !ok {
		child = map[string]interface{}{}
		m[name] = child
	}
	return setPath(child, keys[1:], value)
}

// splitUnescaped splits on sep outside backslash escapes (and, with braces, outside {...}).
func splitUnescaped(s string, sep byte, braces bool) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case braces && s[i] == '{':
			depth++
		case braces && s[i] == '}' && depth > 0:
			depth--
		case s[i] == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func indexUnescaped(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		} else if s[i] == c {
			return i
		}
	}
	return -1
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// --- Templates --------------------------------------------------------------------------------

// toYAML is Helm's toYaml: YAML of the JSON form of v (so a whole float64 prints as an
// integer, not 1e+06), two-space indent, no trailing newline, "" on error.
func toYAML(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return ""
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(jsonNumbers(generic)); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// jsonNumbers turns json.Number into int64 when integral, else float64, for the YAML encoder.
func jsonNumbers(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		for k, x := range t {
			t[k] = jsonNumbers(x)
		}
	case []interface{}:
		for i, x := range t {
			t[i] = jsonNumbers(x)
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		if f == math.Trunc(f) && math.Abs(f) < 1e18 {
			return int64(f)
		}
		return f
	}
	return v
}

func funcMap(root **template.Template) template.FuncMap {
	fm := sprig.TxtFuncMap()
	// Helm removes these: a chart must not depend on the machine that renders it.
	delete(fm, "env")
	delete(fm, "expandenv")
	const maxIncludeDepth = 1000
	depth := 0
	fm["include"] = func(name string, data interface{}) (string, error) {
		if depth++; depth > maxIncludeDepth {
			return "", fmt.Errorf("include %q: nested more than %d deep", name, maxIncludeDepth)
		}
		defer func() { depth-- }()
		var buf bytes.Buffer
		if err := (*root).ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	fm["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := (*root).Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Option("missingkey=zero").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	fm["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	fm["toYaml"] = toYAML
	fm["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	fm["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	fm["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	// `helm template` has no cluster to ask.
	fm["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return fm
}

// Go's "template: NAME:LINE:COL: executing "X" at <fail "...">: error calling fail: MSG",
// nested once per include, becomes Helm's "execution error at (NAME:LINE:COL): MSG" with the
// outermost location and the innermost message.
var (
	errLocationRe = regexp.MustCompile(`^template: (\S+?:\d+:\d+):`)
	errCallRe     = regexp.MustCompile(`error calling \w+: `)
)

func cleanError(err error) error {
	msg := err.Error()
	loc := errLocationRe.FindStringSubmatch(msg)
	calls := errCallRe.FindAllStringIndex(msg, -1)
	if loc == nil || calls == nil {
		return err
	}
	return fmt.Errorf("execution error at (%s): %s", loc[1], msg[calls[len(calls)-1][1]:])
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

func renderTemplates(chartDir string, meta, values map[string]interface{}, caps *capabilities,
	o options) (string, error) {
	chartName := meta["Name"].(string)
	templatesDir := filepath.Join(chartDir, "templates")
	var names []string
	sources := map[string]string{}
	err := filepath.WalkDir(templatesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(templatesDir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Join(chartName, "templates", filepath.ToSlash(rel))
		names = append(names, name)
		sources[name] = string(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)

	var root *template.Template
	root = template.New(chartName).Option("missingkey=zero").Funcs(funcMap(&root))
	for _, name := range names {
		if _, err := root.New(name).Parse(sources[name]); err != nil {
			return "", fmt.Errorf("parse error: %v", err)
		}
	}

	release := map[string]interface{}{
		"Name": o.releaseName, "Namespace": o.namespace, "Service": "Helm",
		"IsInstall": true, "IsUpgrade": false, "Revision": 1,
	}
	render := func(name string) (string, error) {
		data := map[string]interface{}{
			"Values": values, "Release": release, "Chart": meta, "Capabilities": caps,
			"Files":    map[string]interface{}{},
			"Template": map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", cleanError(err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}

	notesName := path.Join(chartName, "templates", "NOTES.txt")
	if o.notes {
		if _, ok := sources[notesName]; !ok {
			return "", errors.New("the chart has no templates/NOTES.txt")
		}
		return render(notesName)
	}
	var out strings.Builder
	for _, name := range names {
		if name == notesName || strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		text, err := render(name)
		if err != nil {
			return "", err
		}
		for _, doc := range docSeparator.Split(text, -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.Trim(doc, "\n"))
		}
	}
	return out.String(), nil
}
