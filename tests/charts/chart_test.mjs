// The Helm chart (charts/loupe) and the container recipe (packaging/container), tested without
// a cluster, without helm and without a container engine:
//   - the chart is rendered by tests/charts/render (Helm's template engine and functions, see
//     its main.go for why it exists) with the default values and the files in values/;
//   - the merged values are validated against values.schema.json (ajv), as helm install does;
//   - every manifest is validated against the Kubernetes OpenAPI schemas (kubernetes-models)
//     or the prometheus-operator CRD schema, and its content is asserted;
//   - the flags and variables the chart passes are checked against the real agent: they are
//     listed by `loupe --help`, and the agent's own parser accepts them;
//   - the image's runtime package list is checked against the libraries the built binary
//     loads (ldd, dpkg -S, apt-cache depends), its user and file capabilities against the
//     chart's securityContext. The image itself is not built here (no container engine).
//
// Run by CTest (tests/charts/CMakeLists.txt), which sets CHART_RENDER and LOUPE_BIN.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, realpathSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import Ajv from "ajv";
import YAML from "yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { ClusterRole } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole";
import { ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";

const here = path.dirname(fileURLToPath(import.meta.url));
const sourceDir = path.resolve(here, "../..");
const chartDir = path.join(sourceDir, "charts/loupe");
const valuesDir = path.join(here, "values");
const dockerfile = path.join(sourceDir, "packaging/container/Dockerfile");

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this test through CTest (ctest -R chart)`);
  return value;
}
const renderBin = requiredEnv("CHART_RENDER");
const loupeBin = requiredEnv("LOUPE_BIN");

// The five capabilities of the non-privileged mode (values.yaml, "Privileges").
const kCapabilities = ["BPF", "DAC_READ_SEARCH", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"];

const kModels = new Map([
  ["apps/v1/DaemonSet", DaemonSet],
  ["v1/ServiceAccount", ServiceAccount],
  ["v1/Service", Service],
  ["v1/Secret", Secret],
  ["rbac.authorization.k8s.io/v1/ClusterRole", ClusterRole],
  ["rbac.authorization.k8s.io/v1/ClusterRoleBinding", ClusterRoleBinding],
  ["monitoring.coreos.com/v1/ServiceMonitor", ServiceMonitor],
]);

// --- helm install, without the cluster ------------------------------------------------------

const ajv = new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true });
const validateValues = ajv.compile(JSON.parse(readFileSync(path.join(chartDir, "values.schema.json"), "utf8")));

function renderArgs(files, sets) {
  const args = [chartDir, "-name", "loupe", "-namespace", "observability"];
  for (const f of files) args.push("-f", path.join(valuesDir, f));
  for (const s of sets) args.push("--set", s);
  return args;
}

function runRender(args) {
  const r = spawnSync(renderBin, args, { encoding: "utf8" });
  if (r.error) throw r.error;
  return r;
}

// Like `helm install --dry-run`: the merged values must match values.schema.json, then the
// templates must render, then every manifest must match its schema. Returns
// { docs, text } or throws an Error whose message is what the user would read.
function install(files = [], sets = []) {
  const merged = runRender([...renderArgs(files, sets), "-values-json"]);
  if (merged.status !== 0) throw new Error(merged.stderr.trim());
  const values = JSON.parse(merged.stdout);
  if (!validateValues(values)) {
    const lines = validateValues.errors.map((e) => {
      const where = e.instancePath || "(top level)";
      const extra = e.keyword === "additionalProperties" ? ` '${e.params.additionalProperty}'` : "";
      const allowed = e.keyword === "enum" ? `: ${e.params.allowedValues.join(", ")}` : "";
      // A "not" fails with "must NOT be valid"; the rule's own description says why.
      if (e.keyword === "not" && e.schema?.description) return `values ${where}: ${e.schema.description}`;
      const why = e.parentSchema?.description ? ` (${e.parentSchema.description})` : "";
      return `values ${where} ${e.message}${extra}${allowed}${why}`;
    });
    throw new Error(`values don't meet the chart's schema:\n${lines.join("\n")}`);
  }
  const rendered = runRender(renderArgs(files, sets));
  if (rendered.status !== 0) throw new Error(rendered.stderr.trim());
  const docs = [];
  for (const doc of YAML.parseAllDocuments(rendered.stdout)) {
    assert.deepEqual(doc.errors, [], `YAML errors in the rendered chart`);
    const obj = doc.toJS();
    if (obj == null) continue;
    const id = `${obj.apiVersion}/${obj.kind}`;
    const Model = kModels.get(id);
    assert.ok(Model, `no schema known for ${id} (${obj.metadata?.name}): add it to kModels`);
    try {
      new Model(obj).validate();
    } catch (e) {
      throw new Error(`${id} ${obj.metadata?.name} fails its schema: ${e.message}`);
    }
    docs.push(obj);
  }
  return { docs, text: rendered.stdout, values };
}

function only(docs, kind) {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}, found ${found.length}`);
  return found[0];
}

function agentContainer(docs) {
  const ds = only(docs, "DaemonSet");
  assert.equal(ds.spec.template.spec.containers.length, 1);
  return ds.spec.template.spec.containers[0];
}

function envByName(container) {
  return new Map((container.env ?? []).map((e) => [e.name, e]));
}

// Every installation the suite renders, so that the flag checks cover them all.
const kValidInstalls = [
  [],
  ["privileged.yaml"],
  ["otlp-existing-secret.yaml"],
  ["otlp-created-secret.yaml"],
  ["servicemonitor.yaml"],
  ["filters-and-limits.yaml"],
  ["otlp-existing-secret.yaml", "filters-and-limits.yaml", "servicemonitor.yaml"],
];

// --- defaults -------------------------------------------------------------------------------

test("default values render a DaemonSet, RBAC, a ServiceAccount and a headless Service, all valid", () => {
  const { docs } = install();
  assert.deepEqual(docs.map((d) => d.kind).sort(),
    ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Service", "ServiceAccount"]);
  for (const d of docs) {
    if (!d.kind.startsWith("Cluster")) assert.equal(d.metadata.namespace, "observability", d.kind);
  }
});

test("default DaemonSet: host PID namespace, fine-grained capabilities, read-only root", () => {
  const { docs } = install();
  const pod = only(docs, "DaemonSet").spec.template.spec;
  assert.equal(pod.hostPID, true);
  assert.equal(pod.hostNetwork, undefined);
  const sc = agentContainer(docs).securityContext;
  assert.deepEqual(sc.capabilities.drop, ["ALL"]);
  assert.deepEqual([...sc.capabilities.add].sort(), kCapabilities);
  assert.equal(sc.privileged, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.equal(sc.runAsNonRoot, true);
  assert.equal(sc.runAsUser, 65532);
  // no_new_privs would make the kernel ignore the binary's file capabilities.
  assert.equal(sc.allowPrivilegeEscalation, true);
  assert.equal(pod.securityContext.seccompProfile.type, "Unconfined");
});

test("default DaemonSet mounts exactly tracefs, debugfs and the cgroup fs from the host, read-only", () => {
  const { docs } = install();
  const pod = only(docs, "DaemonSet").spec.template.spec;
  const hostPaths = new Map(pod.volumes.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath]));
  const mounts = new Map(agentContainer(docs).volumeMounts.map((m) => [m.name, m]));
  const expected = { tracefs: "/sys/kernel/tracing", debugfs: "/sys/kernel/debug", cgroup: "/sys/fs/cgroup" };
  assert.deepEqual([...hostPaths.keys()].sort(), Object.keys(expected).sort());
  for (const [name, dir] of Object.entries(expected)) {
    assert.deepEqual(hostPaths.get(name), { path: dir, type: "Directory" }, name);
    assert.deepEqual(mounts.get(name), { name, mountPath: dir, readOnly: true }, name);
  }
  assert.ok(![...hostPaths.values()].some((h) => h.path === "/sys/fs/bpf"), "bpffs is off by default");
});

test("default DaemonSet: probes on /healthz and /readyz at the metrics port, NODE_NAME, tolerations", () => {
  const { docs } = install();
  const ds = only(docs, "DaemonSet");
  const c = agentContainer(docs);
  assert.deepEqual(c.ports, [{ name: "metrics", containerPort: 9464, protocol: "TCP" }]);
  assert.ok(c.args.includes("--metrics-listen=0.0.0.0:9464"), c.args.join(" "));
  assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
  assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
  const env = envByName(c);
  assert.deepEqual(env.get("NODE_NAME").valueFrom, { fieldRef: { fieldPath: "spec.nodeName" } });
  assert.equal(env.has("OTEL_EXPORTER_OTLP_ENDPOINT"), false);
  assert.equal(env.has("OTEL_EXPORTER_OTLP_HEADERS"), false);
  assert.ok(c.args.includes("--no-console"));
  assert.deepEqual(ds.spec.template.spec.tolerations, [{ operator: "Exists" }]);
  assert.equal(ds.spec.updateStrategy.type, "RollingUpdate");
  assert.equal(ds.spec.template.spec.priorityClassName, undefined);
  assert.ok(c.resources.requests.cpu && c.resources.requests.memory, "requests");
  assert.ok(c.resources.limits.cpu && c.resources.limits.memory, "limits");
  assert.equal(c.image, "loupe:0.1.0");
});

test("default RBAC: get/list/watch on pods only, bound to the DaemonSet's service account", () => {
  const { docs } = install();
  const role = only(docs, "ClusterRole");
  assert.deepEqual(role.rules, [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"] }]);
  const binding = only(docs, "ClusterRoleBinding");
  assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name });
  const sa = only(docs, "ServiceAccount");
  assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: "observability" }]);
  const pod = only(docs, "DaemonSet").spec.template.spec;
  assert.equal(pod.serviceAccountName, sa.metadata.name);
  assert.equal(pod.automountServiceAccountToken, true);
});

test("default Service: headless, port 9464 named metrics, selects the agent pods", () => {
  const { docs } = install();
  const svc = only(docs, "Service");
  assert.equal(svc.spec.clusterIP, "None");
  assert.deepEqual(svc.spec.ports, [{ name: "metrics", port: 9464, targetPort: "metrics", protocol: "TCP" }]);
  const podLabels = only(docs, "DaemonSet").spec.template.metadata.labels;
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v, k);
  assert.deepEqual(only(docs, "DaemonSet").spec.selector.matchLabels, svc.spec.selector);
});

// --- non-default values ---------------------------------------------------------------------

test("privileged: true gives a privileged root container and no capability list", () => {
  const { docs } = install(["privileged.yaml"]);
  const sc = agentContainer(docs).securityContext;
  assert.equal(sc.privileged, true);
  assert.equal(sc.runAsUser, 0);
  assert.equal(sc.capabilities, undefined);
  assert.equal(sc.readOnlyRootFilesystem, true);
});

test("ServiceMonitor only when enabled; it selects the Service's metrics port", () => {
  assert.equal(install().docs.filter((d) => d.kind === "ServiceMonitor").length, 0);
  const { docs } = install(["servicemonitor.yaml"]);
  const sm = only(docs, "ServiceMonitor");
  const svc = only(docs, "Service");
  assert.equal(sm.metadata.labels.release, "kube-prometheus-stack");
  assert.deepEqual(sm.spec.namespaceSelector, { matchNames: ["observability"] });
  for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svc.metadata.labels[k], v, k);
  assert.equal(sm.spec.endpoints.length, 1);
  assert.equal(sm.spec.endpoints[0].port, "metrics");
  assert.equal(sm.spec.endpoints[0].path, "/metrics");
  assert.equal(sm.spec.endpoints[0].interval, "15s");
  // The port moved everywhere at once.
  assert.equal(svc.spec.ports[0].port, 19464);
  const c = agentContainer(docs);
  assert.equal(c.ports[0].containerPort, 19464);
  assert.ok(c.args.includes("--metrics-listen=0.0.0.0:19464"));
  assert.throws(() => install(["servicemonitor.yaml"], ["metrics.service.enabled=false"]),
    /serviceMonitor.enabled needs metrics.service.enabled/);
});

test("OTLP endpoint, protocol, sampling and resource attributes as variables; headers from an existing Secret", () => {
  const { docs } = install(["otlp-existing-secret.yaml"]);
  const env = envByName(agentContainer(docs));
  assert.equal(env.get("OTEL_EXPORTER_OTLP_ENDPOINT").value, "http://otel-collector.observability:4317");
  assert.equal(env.get("OTEL_EXPORTER_OTLP_PROTOCOL").value, "grpc");
  assert.deepEqual(env.get("OTEL_EXPORTER_OTLP_HEADERS").valueFrom,
    { secretKeyRef: { name: "otlp-auth", key: "api-headers" } });
  assert.equal(env.get("OTEL_TRACES_SAMPLER").value, "parentbased_traceidratio");
  assert.equal(env.get("OTEL_TRACES_SAMPLER_ARG").value, "0.25");
  assert.equal(env.get("OTEL_RESOURCE_ATTRIBUTES").value,
    "deployment.environment=production,k8s.cluster.name=prod-eu-1");
  assert.equal(docs.filter((d) => d.kind === "Secret").length, 0, "an existing Secret is not created");
});

test("headers given as a value: the chart creates the Secret, and the DaemonSet only refers to it", () => {
  const { docs } = install(["otlp-created-secret.yaml"]);
  const secret = only(docs, "Secret");
  assert.deepEqual(secret.stringData, { headers: "api-key=s3cr3t" });
  const ds = only(docs, "DaemonSet");
  const env = envByName(agentContainer(docs));
  assert.deepEqual(env.get("OTEL_EXPORTER_OTLP_HEADERS").valueFrom,
    { secretKeyRef: { name: secret.metadata.name, key: "headers" } });
  assert.equal(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").value, "https://otlp.example.com/v1/traces");
  assert.ok(!JSON.stringify(ds).includes("s3cr3t"), "the header value must not appear in the DaemonSet");
  assert.match(ds.spec.template.metadata.annotations["checksum/otlp-headers"], /^[0-9a-f]{64}$/);
});

test("filters and payload limits become flags; RBAC and the service account can be left out", () => {
  const { docs } = install(["filters-and-limits.yaml"]);
  const c = agentContainer(docs);
  for (const flag of ["--port=80,5432", "--pid=1234", "--payload-bytes=1024", "--payload-bytes-framed=16384",
    "--log-level=debug", "--resource-interval=30", "--console", "--max-connections=32768"]) {
    assert.ok(c.args.includes(flag), `${flag} missing from ${c.args.join(" ")}`);
  }
  assert.ok(!c.args.includes("--no-console"));
  assert.equal(envByName(c).get("OTEL_EXPORTER_OTLP_COMPRESSION").value, "gzip");
  const pod = only(docs, "DaemonSet").spec.template.spec;
  assert.equal(pod.priorityClassName, "system-node-critical");
  assert.deepEqual(pod.volumes.find((v) => v.name === "bpffs").hostPath, { path: "/sys/fs/bpf", type: "Directory" });
  assert.deepEqual(c.volumeMounts.find((m) => m.name === "bpffs"), { name: "bpffs", mountPath: "/sys/fs/bpf", readOnly: true });
  assert.deepEqual(docs.map((d) => d.kind).sort(), ["DaemonSet", "Service"]);
  assert.equal(pod.serviceAccountName, "observability-agents");
  // A values file merges into the defaults: one limit changed, the rest kept.
  assert.deepEqual(c.resources.limits, { cpu: "1", memory: "1Gi" });
  assert.deepEqual(c.resources.requests, { cpu: "100m", memory: "128Mi" });
});

test("--set overrides files, and null removes a default", () => {
  const { docs } = install(["filters-and-limits.yaml"], ["logLevel=warn", "resources.limits.cpu=null"]);
  const c = agentContainer(docs);
  assert.ok(c.args.includes("--log-level=warn"));
  assert.deepEqual(c.resources.limits, { memory: "1Gi" });
});

test("NOTES.txt renders and tells where the data goes", () => {
  const notes = (sets) => execFileSync(renderBin, [...renderArgs([], sets), "-notes"], { encoding: "utf8" });
  const plain = notes([]);
  assert.match(plain, /rollout status daemonset\/loupe/);
  assert.match(plain, /port-forward daemonset\/loupe 9464/);
  assert.match(plain, /No OTLP endpoint is set/);
  assert.match(notes(["otlp.endpoint=http://c:4318"]), /go over OTLP \(http\/protobuf\) to http:\/\/c:4318/);
});

// --- bad input ------------------------------------------------------------------------------

test("invalid values are rejected with a message naming the value", () => {
  assert.throws(() => install(["invalid-protocol.yaml"]),
    (e) => /values \/otlp\/protocol must be equal to one of the allowed values: grpc, http\/protobuf/.test(e.message));
  assert.throws(() => install(["invalid-unknown-key.yaml"]),
    (e) => /values \/otlp must NOT have additional properties 'endpont'/.test(e.message));
  assert.throws(() => install(["invalid-both-header-sources.yaml"]),
    (e) => /existingSecret and value cannot both be set/.test(e.message));
  assert.throws(() => install([], ["filters.ports={0}"]), (e) => /\/filters\/ports\/0 must be >= 1/.test(e.message));
  assert.throws(() => install([], ["payload.bytes=65536"]), (e) => /\/payload\/bytes must be <= 32768/.test(e.message));
  // Helm's --set types 0.5 as a string, as here: the schema catches it rather than the agent.
  assert.throws(() => install([], ["sampling.ratio=0.5"]), (e) => /\/sampling\/ratio must be number,null/.test(e.message));
});

test("the templates refuse two header sources even without the schema", () => {
  const r = runRender(renderArgs(["invalid-both-header-sources.yaml"], []));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /execution error at \(loupe\/templates\/daemonset\.yaml:\d+:\d+\): otlp\.headers: set existingSecret .* not both/);
});

test("the chart's kubeVersion constraint is enforced", () => {
  const r = runRender([chartDir, "-kube-version", "v1.18.0"]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /chart requires kubeVersion: >=1\.19\.0-0 which is incompatible with Kubernetes v1\.18\.0/);
});

// --- the chart against the agent ------------------------------------------------------------

const helpText = execFileSync(loupeBin, ["--help"], { encoding: "utf8" });
const helpFlags = new Set([...helpText.matchAll(/^\s+(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1]));

test("every flag and variable the chart passes is one the agent documents in --help", () => {
  assert.ok(helpFlags.has("--metrics-listen") && helpFlags.size > 20, "could not read the flags of loupe --help");
  const nodeNameEnv = readFileSync(path.join(sourceDir, "agent/kubernetes.h"), "utf8");
  assert.match(nodeNameEnv, /kNodeNameEnv\[\] = "NODE_NAME"/, "the agent no longer reads NODE_NAME");
  for (const files of kValidInstalls) {
    const c = agentContainer(install(files).docs);
    for (const arg of c.args) {
      const flag = arg.split("=")[0];
      assert.ok(helpFlags.has(flag), `${files}: the chart passes ${flag}, which loupe --help does not list`);
    }
    for (const { name } of c.env) {
      if (name === "NODE_NAME") continue;
      assert.ok(new RegExp(`\\b${name}\\b`).test(helpText), `${files}: ${name} is not in loupe --help`);
    }
  }
});

test("the agent's parser accepts the chart's arguments and environment", () => {
  for (const files of kValidInstalls) {
    const c = agentContainer(install(files).docs);
    const env = { PATH: process.env.PATH };
    for (const e of c.env) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.secretKeyRef) env[e.name] = "api-key=from-a-secret";
      else if (e.valueFrom?.fieldRef) env[e.name] = "node-1";
    }
    // --replay of a missing file: the agent parses flags and variables first (exit 2 on a bad
    // one), then fails to open the recording (exit 1) without touching the kernel.
    const missing = "/nonexistent/chart-test.loupe";
    const r = spawnSync(loupeBin, [...c.args, "--replay", missing], { env, encoding: "utf8", timeout: 30000 });
    assert.equal(r.status, 1, `${files}: loupe ${c.args.join(" ")} exited ${r.status}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot open recording ${missing}`), `${files}: ${r.stderr}`);
  }
});

// --- the image recipe -----------------------------------------------------------------------

function dockerStages() {
  const text = readFileSync(dockerfile, "utf8").replace(/\\\n/g, " ");
  const stages = [];
  for (const line of text.split("\n")) {
    const from = line.match(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i);
    if (from) stages.push({ image: from[1], name: from[2], lines: [] });
    else if (stages.length && line.trim() && !line.trim().startsWith("#")) stages.at(-1).lines.push(line.trim());
  }
  return stages;
}

// The packages of every `apt-get install` in a stage.
function aptPackages(stage) {
  const pkgs = [];
  for (const line of stage.lines) {
    for (const m of line.matchAll(/apt-get install((?:\s+[^&;\s]+)+)/g)) {
      pkgs.push(...m[1].trim().split(/\s+/).filter((w) => !w.startsWith("-")));
    }
  }
  return pkgs;
}

const haveDpkg = spawnSync("dpkg", ["--version"]).status === 0;

test("the runtime stage installs a package for every library the agent loads", { skip: !haveDpkg && "not a Debian system" }, () => {
  const stages = dockerStages();
  const runtime = stages.at(-1);
  assert.equal(runtime.image, "debian:12-slim");
  assert.equal(stages[0].image, "debian:12");
  const listed = new Set(aptPackages(runtime));
  assert.ok(listed.has("libc6") && listed.size > 10, `could not read the runtime packages: ${[...listed]}`);

  // What apt brings with the listed packages (and what debian:12-slim has: its packages are
  // dependencies of these or essential, like libc6, which is listed anyway).
  const closure = new Set(
    execFileSync("apt-cache", ["depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
      "--no-breaks", "--no-replaces", "--no-enhances", ...listed], { encoding: "utf8" })
      .split("\n").filter((l) => l && !l.startsWith(" ") && !l.startsWith("<")).map((l) => l.trim()));
  for (const p of listed) assert.ok(closure.has(p), `apt-cache does not know ${p} (misspelt, or no apt-get update yet)`);

  const ldd = execFileSync("ldd", [loupeBin], { encoding: "utf8" });
  const libs = new Map();  // soname -> path
  for (const m of ldd.matchAll(/^\s*(\S+)\s+=>\s+(\/\S+)/gm)) libs.set(m[1], m[2]);
  for (const m of ldd.matchAll(/^\s*(\/\S+ld-linux\S*)\s/gm)) libs.set(path.basename(m[1]), m[1]);
  assert.ok(libs.size > 10, `could not read ldd's output:\n${ldd}`);

  // dpkg knows a file by the path its package ships, which with Debian's merged /usr may be
  // the /lib or the /usr/lib spelling, of the symlink or of its target. One dpkg -S call for
  // all of them: each call reads the whole package database.
  const candidates = (file) => {
    const names = [file, realpathSync(file)];
    for (const f of [...names]) names.push(f.startsWith("/usr/") ? f.slice(4) : `/usr${f}`);
    return names;
  };
  const owners = new Map();
  const dpkg = spawnSync("dpkg", ["-S", ...new Set([...libs.values()].flatMap(candidates))], { encoding: "utf8" });
  for (const line of dpkg.stdout.split("\n")) {
    const m = line.match(/^([^:,\s]+)(?::[a-z0-9]+)?(?:, \S+)*: (\/.*)$/);
    if (m) owners.set(m[2], m[1]);
  }
  const packageOf = (file) => {
    const owner = candidates(file).map((f) => owners.get(f)).find(Boolean);
    assert.ok(owner, `no Debian package owns ${file}`);
    return owner;
  };
  for (const [soname, file] of libs) {
    const pkg = packageOf(file);
    assert.ok(closure.has(pkg), `${soname} (${file}) comes from ${pkg}, which the runtime stage does not install`);
  }

  // The direct dependencies are named, not left to chance through another package's.
  const needed = execFileSync("readelf", ["-d", loupeBin], { encoding: "utf8" });
  for (const m of needed.matchAll(/\(NEEDED\)\s+Shared library: \[(\S+)\]/g)) {
    assert.ok(libs.has(m[1]), `ldd did not resolve ${m[1]}`);
    const pkg = packageOf(libs.get(m[1]));
    assert.ok(listed.has(pkg), `${m[1]} comes from ${pkg}: list it in the runtime stage's apt-get install`);
  }
});

test("the image's user and file capabilities match the chart's securityContext", () => {
  const runtime = dockerStages().at(-1);
  const user = runtime.lines.map((l) => l.match(/^USER\s+(\d+)(?::\d+)?$/)).filter(Boolean);
  assert.equal(user.length, 1, "one numeric USER in the runtime stage");
  const sc = agentContainer(install().docs).securityContext;
  assert.equal(sc.runAsUser, Number(user[0][1]));
  const setcap = runtime.lines.join(" ").match(/setcap\s+(\S+)\+ep\s+(\S+)/);
  assert.ok(setcap, "the runtime stage sets file capabilities with setcap ...+ep");
  const fileCaps = setcap[1].split(",").map((c) => c.replace(/^cap_/, "").toUpperCase()).sort();
  assert.deepEqual(fileCaps, [...sc.capabilities.add].sort());
  const entrypoint = runtime.lines.find((l) => l.startsWith("ENTRYPOINT"));
  assert.ok(entrypoint?.includes(setcap[2]), `ENTRYPOINT runs ${setcap[2]}`);
});

test("every values file in values/ is used by this test", () => {
  const used = new Set([...kValidInstalls.flat(), "invalid-protocol.yaml", "invalid-unknown-key.yaml",
    "invalid-both-header-sources.yaml"]);
  for (const f of readdirSync(valuesDir)) assert.ok(used.has(f), `${f} is not used`);
});
