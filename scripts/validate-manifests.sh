#!/usr/bin/env bash
# Validates what `kubectl apply -k deploy/` would send, offline:
#   - renders deploy/ (or DIR) with `kubectl kustomize`;
#   - checks every built-in object against the Kubernetes API's JSON schemas
#     (kubernetes-validate, strict: unknown fields fail), version 1.32;
#   - checks the Multus NetworkAttachmentDefinition against
#     deploy/schemas/network-attachment-definition.json, and that its
#     spec.config is JSON naming "type": "jobnet" and a pool that the
#     ConfigMap's jobnetd.toml defines;
#   - cross-checks what a schema cannot see: namespaces exist, the
#     DaemonSet's service account, ConfigMap and volume names resolve, its
#     namespace allows privileged pods, and its image is the one
#     scripts/image.sh tags (localhost/jobnet:<workspace version>).
#
# The validator lives in a venv under $JOBNET_CACHE_DIR (default
# /var/cache/jobnet, or ~/.cache/jobnet when that is not writable), created
# on first use from PyPI; a fresh machine needs only python3 and kubectl.
#   scripts/validate-manifests.sh         # deploy/
#   scripts/validate-manifests.sh DIR     # another kustomization, e.g. an overlay
#
# Exit: 0 pass, 1 fail (each failure names the object and field), 77 skip
# (python3 is absent).
set -euo pipefail
dir=$(realpath "${1:-$(dirname "$0")/../deploy}")
cd "$(dirname "$0")/.."
. scripts/lib/workspace.sh

# The validator and the Kubernetes version its schemas are checked against.
KUBERNETES_VALIDATE_VERSION=1.32.0
KUBERNETES_VERSION=1.32.0

die() { echo "validate-manifests: $*" >&2; exit 1; }

command -v python3 >/dev/null || { echo "validate-manifests: SKIP: python3 is absent"; exit 77; }
command -v kubectl >/dev/null || die "kubectl is needed to render deploy/ (kubectl kustomize)"

version=$(workspace_version)
[ -n "$version" ] || die "no [workspace.package] version in Cargo.toml"

cache=${JOBNET_CACHE_DIR:-/var/cache/jobnet}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/jobnet"
  mkdir -p "$cache"
fi
venv="$cache/venv"

venv_ready() {
  [ -x "$venv/bin/python" ] &&
    [ "$("$venv/bin/python" -c 'import kubernetes_validate.version as v; print(v.__version__)' 2>/dev/null)" \
      = "$KUBERNETES_VALIDATE_VERSION" ]
}

make_venv() {
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 ships venv's pip bootstrap separately.
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "validate-manifests: installing python3-venv" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
    fi
    python3 -m venv "$venv" || die "cannot create a Python venv in $venv"
  fi
  echo "validate-manifests: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
    die "pip could not install kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
}

# One creator at a time: two runs must not build the same venv at once.
exec 9>"$cache/venv.lock"
command -v flock >/dev/null && flock 9
venv_ready || make_venv
venv_ready || die "the venv in $venv does not provide kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
exec 9>&-

rendered=$(mktemp "${TMPDIR:-/tmp}/jobnet-manifests.XXXXXX.yaml")
trap 'rm -f "$rendered"' EXIT
kubectl kustomize "$dir" >"$rendered" || die "kubectl kustomize $dir failed"

JOBNET_VERSION="$version" KUBERNETES_VERSION="$KUBERNETES_VERSION" \
  "$venv/bin/python" - "$rendered" deploy/schemas/network-attachment-definition.json <<'PY'
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11: the pool cross-check is skipped
    tomllib = None

rendered_path, nad_schema_path = sys.argv[1], sys.argv[2]
k8s_version = os.environ["KUBERNETES_VERSION"]
image = "localhost/jobnet:" + os.environ["JOBNET_VERSION"]
failures = []
checked = 0


def name_of(obj):
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "<no name>")
    return f"{obj.get('kind', '<no kind>')} {ns + '/' if ns else ''}{name}"


def fail(obj, field, message):
    failures.append(f"{name_of(obj)}: {field or '<object>'}: {message}")


def field_path(error):
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts)


def api_errors(obj):
    """Every schema error of a built-in object, not just the first.

    kubernetes_validate.validate() stops at the first error, which for a
    typo'd field is often a confusing consequence ("containers is required")
    rather than the typo itself, so its bundled schemas are walked here the
    same way. Falls back to validate() if the pinned package's layout is
    not as expected."""
    try:
        from kubernetes_validate import utils
        from referencing import Registry, Resource
        import re

        wanted = utils.major_minor(k8s_version)
        schema_version = [v for v in utils.all_versions()
                          if utils.Version(utils.major_minor(v)) <= utils.Version(wanted)][-1]
        api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
        folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
        try:
            schema = utils.schema_contents(f"{folder}/{obj['kind'].lower()}-{api}.json", k8s_version)
        except FileNotFoundError:
            raise kubernetes_validate.SchemaNotFoundError(
                version=wanted, kind=obj["kind"], api_version=obj["apiVersion"])
        defs = utils.schema_contents(f"{folder}/_definitions.json", k8s_version)
    except (ImportError, AttributeError, IndexError):
        kubernetes_validate.validate(obj, k8s_version, strict=True)
        return []
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])


with open(rendered_path) as f:
    objects = [o for o in yaml.safe_load_all(f) if o is not None]
with open(nad_schema_path) as f:
    nad_validator = jsonschema.Draft202012Validator(json.load(f))

by_kind = {}
for obj in objects:
    if not isinstance(obj, dict):
        failures.append(f"a rendered document is not an object: {obj!r:.60}")
        continue
    by_kind.setdefault(obj.get("kind"), []).append(obj)

for obj in objects:
    if not isinstance(obj, dict):
        continue
    checked += 1
    if obj.get("kind") == "NetworkAttachmentDefinition":
        for e in sorted(nad_validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            fail(obj, field_path(e), e.message)
        continue
    try:
        errors = api_errors(obj)
    except kubernetes_validate.SchemaNotFoundError as e:
        fail(obj, "apiVersion/kind", e.message)
        continue
    except kubernetes_validate.ValidationError as e:
        errors = [e]
    for e in errors:
        fail(obj, field_path(e), e.message)

namespaces = {o["metadata"]["name"]: o for o in by_kind.get("Namespace", [])
              if isinstance(o.get("metadata"), dict) and "name" in o["metadata"]}


def meta(obj):
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def names(kind, ns):
    return {meta(o).get("name") for o in by_kind.get(kind, []) if meta(o).get("namespace") == ns}


for obj in objects:
    if not isinstance(obj, dict) or obj.get("kind") == "Namespace":
        continue
    ns = meta(obj).get("namespace")
    if ns is not None and ns not in namespaces:
        fail(obj, "metadata.namespace", f"namespace {ns!r} is not among the manifests")

# The ConfigMap's pools, for the NAD's "pool".
pools = None
for cm in by_kind.get("ConfigMap", []):
    text = (cm.get("data") or {}).get("jobnetd.toml")
    if text is None:
        continue
    if tomllib is None:
        break
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(cm, "data.jobnetd.toml", f"not TOML: {e}")
        continue
    pools = {p.get("name") for p in doc.get("pools", []) if isinstance(p, dict)}

for nad in by_kind.get("NetworkAttachmentDefinition", []):
    config = (nad.get("spec") or {}).get("config")
    if not isinstance(config, str):
        fail(nad, "spec.config", "missing (jobnet needs a CNI config)")
        continue
    try:
        conf = json.loads(config)
    except json.JSONDecodeError as e:
        fail(nad, "spec.config", f"not JSON: {e}")
        continue
    if not isinstance(conf, dict):
        fail(nad, "spec.config", "not a JSON object")
        continue
    plugins = conf.get("plugins") if "plugins" in conf else [conf]
    if not isinstance(plugins, list):
        fail(nad, "spec.config.plugins", "not a list")
        continue
    ours = [p for p in plugins if isinstance(p, dict) and p.get("type") == "jobnet"]
    if not ours:
        types = [p.get("type") if isinstance(p, dict) else p for p in plugins]
        fail(nad, "spec.config.type", f'no plugin with "type": "jobnet" (found {types})')
    if not isinstance(conf.get("cniVersion", conf.get("cniVersions", "")), (str, list)):
        fail(nad, "spec.config.cniVersion", "not a string")
    for p in ours:
        pool = p.get("pool")
        if pool is not None and pools is not None and pool not in pools:
            fail(nad, "spec.config.pool", f"{pool!r} is not a pool of jobnetd.toml ({sorted(pools)})")

for ds in by_kind.get("DaemonSet", []):
    ns = meta(ds).get("namespace")
    pod = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    sa = pod.get("serviceAccountName")
    if sa and sa not in names("ServiceAccount", ns):
        fail(ds, "spec.template.spec.serviceAccountName", f"no ServiceAccount {sa!r} in {ns}")
    volumes = {v.get("name"): v for v in pod.get("volumes", []) if isinstance(v, dict)}
    for i, v in enumerate(pod.get("volumes", [])):
        cm = (v.get("configMap") or {}).get("name") if isinstance(v, dict) else None
        if cm and cm not in names("ConfigMap", ns):
            fail(ds, f"spec.template.spec.volumes[{i}].configMap.name", f"no ConfigMap {cm!r} in {ns}")
    containers = [("initContainers", c) for c in pod.get("initContainers", [])] + \
                 [("containers", c) for c in pod.get("containers", [])]
    privileged = pod.get("hostNetwork") or pod.get("hostPID")
    for i, (where, c) in enumerate(containers):
        if not isinstance(c, dict):
            continue
        at = f"spec.template.spec.{where}[{c.get('name', i)}]"
        for m in c.get("volumeMounts", []):
            if isinstance(m, dict) and m.get("name") not in volumes:
                fail(ds, f"{at}.volumeMounts", f"no volume named {m.get('name')!r}")
        if c.get("image") != image:
            fail(ds, f"{at}.image", f"{c.get('image')!r}, but scripts/image.sh tags {image!r}")
        if (c.get("securityContext") or {}).get("privileged"):
            privileged = True
    if privileged:
        level = (meta(namespaces.get(ns, {})).get("labels") or {}).get("pod-security.kubernetes.io/enforce")
        if level != "privileged":
            fail(ds, "metadata.namespace",
                 f"namespace {ns!r} enforces Pod Security {level or 'the cluster default'!r}; "
                 "the pods need \"privileged\"")

for f in failures:
    print(f"FAIL {f}")
if tomllib is None:
    print("note: Python < 3.11, the NAD's pool was not checked against jobnetd.toml")
print(f"validate-manifests: {checked} objects against Kubernetes {k8s_version} (strict), "
      f"{len(failures)} problem(s)")
sys.exit(1 if failures else 0)
PY
