"""Unit test of hack/podschemas.py's transform on a small OpenAPI document (the kube test
checks the committed file against the real API server's)."""

import json

import pytest
from podschemas import FIELDS, Generator, build

REF = "#/components/schemas/"


def doc(**types):
    return {"components": {"schemas": types}}


def test_refs_inlined_descriptions_and_defaults_dropped_quantities_as_crds_write_them():
    g = Generator(
        doc(
            **{
                "io.k8s.api.core.v1.Thing": {
                    "description": "long text",
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "default": ""},
                        "size": {
                            "allOf": [{"$ref": REF + "io.k8s.apimachinery.pkg.api.resource.Quantity"}],
                            "description": "d",
                        },
                        "port": {"$ref": REF + "io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
                        "refs": {
                            "type": "array",
                            "items": {"$ref": REF + "io.k8s.api.core.v1.LocalObjectReference"},
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "x-kubernetes-patch-strategy": "merge",
                            "x-kubernetes-patch-merge-key": "name",
                        },
                    },
                },
                "io.k8s.api.core.v1.LocalObjectReference": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "default": ""}},
                },
                "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"format": "int-or-string", "oneOf": []},
            }
        )
    )
    out = g.convert({"$ref": REF + "io.k8s.api.core.v1.Thing"})
    text = json.dumps(out)
    assert "$ref" not in text and "description" not in text and "patch" not in text and "allOf" not in text
    assert out["required"] == ["name"] and "default" not in out["properties"]["name"]
    assert out["properties"]["size"]["x-kubernetes-int-or-string"] is True and "pattern" in out["properties"]["size"]
    assert out["properties"]["port"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    }
    # A list-map key that is not required keeps its default (a CRD needs one or the other).
    assert out["properties"]["refs"]["items"]["properties"]["name"] == {"type": "string", "default": ""}


def test_unknown_keywords_and_recursion_stop_the_generator():
    with pytest.raises(ValueError, match="unknown schema keyword 'nullable'"):
        Generator(doc()).convert({"type": "string", "nullable": True})
    g = Generator(
        doc(
            **{
                "io.k8s.api.core.v1.Loop": {
                    "type": "object",
                    "properties": {"next": {"$ref": REF + "io.k8s.api.core.v1.Loop"}},
                }
            }
        )
    )
    with pytest.raises(ValueError, match="recursive"):
        g.convert({"$ref": REF + "io.k8s.api.core.v1.Loop"})


def test_volume_sources_kept_are_the_restricted_standards():
    volume = {
        "type": "object",
        "required": ["name"],
        "properties": {k: {"type": "object"} for k in ("hostPath", "nfs", "configMap", "secret", "emptyDir")}
        | {"name": {"type": "string"}},
    }
    types = {"io.k8s.api.core.v1.Volume": volume}
    g = Generator(doc(**types))
    out = g.convert({"$ref": REF + "io.k8s.api.core.v1.Volume"})
    assert set(out["properties"]) == {"name", "configMap", "secret", "emptyDir"}
    assert g.omitted == {"Volume": ["hostPath", "nfs"]}
    assert set(FIELDS) >= {"tolerations", "affinity", "volumes", "volumeMounts", "envFrom", "resources"}
    assert callable(build)
