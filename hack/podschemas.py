"""The Kubernetes shapes of `podTemplate`'s fields, taken from a real API server.

The TimestampPipeline CRD validates `spec.podTemplate` and `spec.<app>.podTemplate`
with the Kubernetes types' own schemas (Toleration, Affinity, Volume, ...), not with
`x-kubernetes-preserve-unknown-fields` blobs. A CRD cannot `$ref` them, so this script
reads the API server's OpenAPI v3 document for core/v1 (`/openapi/v3/api/v1`), takes
the schema of each field as PodSpec, Container and ObjectMeta declare it, inlines every
`$ref`, drops descriptions, defaults and the strategic-merge-patch extensions (they
would make the CRD several times larger and mean nothing to a custom resource), and
writes the result to operator/tspipe/data/podtemplate-schemas.json, which
`tspipe.crd` embeds and `tspipe.model` validates with. A test
(tests/operator/test_podtemplate_kube.py) checks the committed file against the
control plane the tests run.

    make pod-schemas                                   # starts a local control plane
    PYTHONPATH=hack python -m podschemas --kubeconfig K  # or reads an existing one
    PYTHONPATH=hack python -m podschemas --openapi api__v1_openapi.json --version v1.37.2

What is left out, and why (also in the file's `omitted`):
- volume sources outside the `restricted` Pod Security Standard's list (hostPath, the
  deprecated in-tree plugins redirected to CSI drivers, gitRepo, nfs, iscsi, fc,
  image): the apps' pods are restricted-compliant and stay so;
- `resources.claims`: it names pod-level `resourceClaims`, which are not exposed;
- `metadata` of an ephemeral volume's claim template keeps only labels and
  annotations, the only fields Kubernetes accepts there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "operator" / "tspipe" / "data" / "podtemplate-schemas.json"

CORE = "io.k8s.api.core.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"

# podTemplate field -> (the Kubernetes type that declares it, its property there).
FIELDS: dict[str, tuple[str, str]] = {
    "labels": (META + "ObjectMeta", "labels"),
    "annotations": (META + "ObjectMeta", "annotations"),
    "resources": (CORE + "Container", "resources"),
    "nodeSelector": (CORE + "PodSpec", "nodeSelector"),
    "tolerations": (CORE + "PodSpec", "tolerations"),
    "affinity": (CORE + "PodSpec", "affinity"),
    "topologySpreadConstraints": (CORE + "PodSpec", "topologySpreadConstraints"),
    "priorityClassName": (CORE + "PodSpec", "priorityClassName"),
    "serviceAccountName": (CORE + "PodSpec", "serviceAccountName"),
    "imagePullSecrets": (CORE + "PodSpec", "imagePullSecrets"),
    "volumes": (CORE + "PodSpec", "volumes"),
    "volumeMounts": (CORE + "Container", "volumeMounts"),
    "envFrom": (CORE + "Container", "envFrom"),
}

# The `restricted` Pod Security Standard's volume types
# (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted).
RESTRICTED_VOLUME_SOURCES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
# Properties kept of a type (everything else is dropped and listed under `omitted`).
KEEP: dict[str, tuple[str, ...]] = {
    CORE + "Volume": ("name", *RESTRICTED_VOLUME_SOURCES),
    META + "ObjectMeta": ("labels", "annotations"),
}
DROP: dict[str, tuple[str, ...]] = {
    CORE + "ResourceRequirements": ("claims",),
}

# Schema keywords carried over; every other keyword of the document must be one of DROPPED
# (an unknown one stops the generator: a new Kubernetes release may need a decision).
KEPT_KEYWORDS = {
    "type",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "format",
    "enum",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}
DROPPED_KEYWORDS = {
    "description",
    "default",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-unions",
    "x-kubernetes-group-version-kind",
}
# Formats a CRD schema knows; others (e.g. "int-or-string" on IntOrString) are dropped.
CRD_FORMATS = {"int32", "int64", "float", "double", "byte", "date", "date-time", "duration"}

# Quantities and int-or-strings are written as CRDs write them (controller-gen's shapes).
QUANTITY_SCHEMA = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",  # noqa: E501 - Kubernetes' quantity pattern, verbatim
}
INT_OR_STRING_SCHEMA = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}


class Generator:
    def __init__(self, openapi: dict[str, Any]):
        self.types: dict[str, Any] = openapi["components"]["schemas"]
        self.omitted: dict[str, list[str]] = {}

    def ref(self, ref: str, seen: tuple[str, ...]) -> dict[str, Any]:
        name = ref.rsplit("/", 1)[-1]
        if name == QUANTITY:
            return dict(QUANTITY_SCHEMA)
        if name == INT_OR_STRING:
            return dict(INT_OR_STRING_SCHEMA)
        if name in seen:
            raise ValueError(f"recursive type {name} (via {' -> '.join(seen)}): a CRD cannot express it")
        schema = dict(self.types[name])
        props = schema.get("properties") or {}
        keep = KEEP.get(name)
        drop = set(DROP.get(name, ())) | ({p for p in props if p not in keep} if keep else set())
        if drop:
            short = name.removeprefix(CORE).removeprefix(META)
            self.omitted[short] = sorted(set(self.omitted.get(short, [])) | drop)
            schema["properties"] = {k: v for k, v in props.items() if k not in drop}
            if "required" in schema:
                schema["required"] = [r for r in schema["required"] if r not in drop]
        return self.convert(schema, seen + (name,))

    def convert(self, schema: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if "$ref" in schema:
            return self.ref(schema["$ref"], seen)
        out: dict[str, Any] = {}
        all_of = schema.get("allOf")
        if all_of:
            (only,) = all_of  # the document wraps a $ref in allOf to describe it
            out.update(self.convert(only, seen))
        for key, value in schema.items():
            if key == "allOf" or key in DROPPED_KEYWORDS:
                continue
            if key not in KEPT_KEYWORDS:
                raise ValueError(f"unknown schema keyword {key!r} (under {' -> '.join(seen) or 'a field'})")
            if key == "properties":
                out[key] = {k: self.convert(v, seen) for k, v in sorted(value.items())}
            elif key in ("items", "additionalProperties"):
                out[key] = self.convert(value, seen)
            elif key == "format":
                if value in CRD_FORMATS:
                    out[key] = value
            elif key == "required":
                if value:
                    out[key] = sorted(value)
            else:
                out[key] = value
        self._list_map_keys(schema, out)
        return out

    def _list_map_keys(self, schema: dict[str, Any], out: dict[str, Any]) -> None:
        """A CRD's list-type map needs each key field required or defaulted: keep the
        document's default for keys that are not required (LocalObjectReference.name)."""
        if out.get("x-kubernetes-list-type") != "map":
            return
        item = out["items"]
        raw = self._raw_item(schema["items"])
        for key in out["x-kubernetes-list-map-keys"]:
            if key in item.get("required", ()):
                continue
            default = ((raw.get("properties") or {}).get(key) or {}).get("default")
            if default is None:
                raise ValueError(f"list map key {key} is neither required nor defaulted")
            item["properties"][key] = {**item["properties"][key], "default": default}

    def _raw_item(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            return self.types[schema["$ref"].rsplit("/", 1)[-1]]
        if schema.get("allOf"):
            return self._raw_item(schema["allOf"][0])
        return schema


def build(openapi: dict[str, Any], version: str) -> dict[str, Any]:
    """The data file's content: the schema of each podTemplate field, CRD-ready."""
    g = Generator(openapi)
    fields = {}
    for field, (owner, prop) in FIELDS.items():
        fields[field] = g.convert(g.types[owner]["properties"][prop], (owner,))
    return {
        "source": f"kube-apiserver {version} /openapi/v3/api/v1; generated by hack/podschemas.py, do not edit",
        "omitted": dict(sorted(g.omitted.items())),
        "fields": fields,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def fetch(kubectl) -> tuple[dict[str, Any], str]:
    """(the core/v1 OpenAPI v3 document, the server's gitVersion) through `kubectl(*args)`."""
    openapi = json.loads(kubectl("get", "--raw", "/openapi/v3/api/v1").stdout)
    version = json.loads(kubectl("get", "--raw", "/version").stdout)["gitVersion"]
    return openapi, version


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="podschemas", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--kubeconfig", help="read the OpenAPI document from this cluster's API server")
    src.add_argument("--openapi", help="read it from a file (api__v1_openapi.json); needs --version")
    ap.add_argument("--version", help="the API server version the file is from (with --openapi)")
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    if args.openapi:
        if not args.version:
            ap.error("--openapi needs --version")
        data = build(json.loads(Path(args.openapi).read_text()), args.version)
    elif args.kubeconfig:
        import subprocess

        from localinfra import cache

        def kubectl(*a: str):
            return subprocess.run(
                [str(cache.k8s_file("tspkube")), "kubectl", "--kubeconfig", args.kubeconfig, *a],
                check=True,
                capture_output=True,
                text=True,
            )

        data = build(*fetch(kubectl))
    else:
        from localinfra.kube import ControlPlane

        with ControlPlane() as cp:
            data = build(*fetch(cp.kubectl))
    text = render(data)
    out = Path(args.out)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is not current: run `make pod-schemas`", file=sys.stderr)
            return 1
        print(f"{out} is current ({data['source']})")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} ({len(text)} bytes) from {data['source']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
