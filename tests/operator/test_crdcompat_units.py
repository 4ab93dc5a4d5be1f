"""The CRD compatibility check (`make lint`, hack/crdcompat.py): what breaks objects or
clients written for the earlier CRD, and what CHANGELOG.md may excuse."""

import copy
from pathlib import Path

import yaml

from tspipe.crdcompat import Break, allowed_breaks, compare, compare_schema, unexcused

ROOT = Path(__file__).resolve().parents[2]

OLD = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "brokers": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 10},
                "mode": {"type": "string", "enum": ["Recommend", "Enforce"]},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 100},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "name": {"type": "string"},
            },
        },
    },
}


def changed(fn):
    new = copy.deepcopy(OLD)
    fn(new["properties"]["spec"]["properties"])
    return [(b.path, b.what) for b in compare_schema(OLD, new)]


def test_the_same_schema_has_no_break():
    assert compare_schema(OLD, copy.deepcopy(OLD)) == []


def test_loosening_and_adding_are_compatible():
    def loosen(p):
        p["brokers"]["maxItems"] = 20
        p["brokers"]["items"]["minLength"] = 0
        p["mode"]["enum"].append("Off")
        p["replicas"]["maximum"] = 1000
        p["new"] = {"type": "string", "pattern": "^a"}  # a new field may be as strict as it likes
        p["labels"]["additionalProperties"]["maxLength"] = 253

    assert changed(loosen) == []


def test_a_removed_or_renamed_field_breaks():
    def rename(p):
        p["title"] = p.pop("name")

    assert changed(rename) == [("spec.name", "removed")]


def test_a_changed_type_breaks_and_stops_there():
    def retype(p):
        p["brokers"] = {"type": "string", "maxLength": 3}

    assert changed(retype) == [("spec.brokers", "type changed: array -> string")]


def test_a_removed_enum_value_or_a_new_enum_breaks():
    def narrow(p):
        p["mode"]["enum"] = ["Enforce"]
        p["name"]["enum"] = ["a"]

    assert changed(narrow) == [("spec.mode", "enum values removed: 'Recommend'"), ("spec.name", "enum added")]


def test_tightened_bounds_break_in_items_and_maps_too():
    def tighten(p):
        p["replicas"]["minimum"] = 1
        p["replicas"]["maximum"] = 10
        p["brokers"]["maxItems"] = 5
        p["brokers"]["items"]["minLength"] = 3
        p["labels"]["additionalProperties"]["maxLength"] = 10
        p["name"]["maxLength"] = 5

    assert sorted(changed(tighten)) == sorted(
        [
            ("spec.replicas", "minimum raised: 0 -> 1"),
            ("spec.replicas", "maximum lowered: 100 -> 10"),
            ("spec.brokers", "maxItems lowered: 10 -> 5"),
            ("spec.brokers[]", "minLength raised: 1 -> 3"),
            ("spec.labels.*", "maxLength lowered: 63 -> 10"),
            ("spec.name", "maxLength lowered: none -> 5"),
        ]
    )


def test_patterns_formats_rules_required_and_pruning_break():
    def tighten(p):
        p["name"]["pattern"] = "^[a-z]+$"
        p["name"]["x-kubernetes-validations"] = [{"rule": "self != 'x'"}]
        p["extra"].pop("x-kubernetes-preserve-unknown-fields")

    new = copy.deepcopy(OLD)
    tighten(new["properties"]["spec"]["properties"])
    new["properties"]["spec"]["required"] = ["name"]
    got = [(b.path, b.what) for b in compare_schema(OLD, new)]
    assert ("spec", "newly required: name") in got
    assert ("spec.name", "pattern added") in got
    assert ("spec.name", "validation rule added or changed: self != 'x'") in got
    assert ("spec.extra", "x-kubernetes-preserve-unknown-fields no longer set") in got


def test_a_rule_guarded_by_a_new_field_is_no_break_and_one_guarded_by_an_old_field_is():
    # The earlier API server pruned `strategy`: no stored object has it, so the rule holds
    # for all of them by its first clause. `name` existed: objects with it may fail.
    def rules(spec):
        spec["strategy"] = {"type": "string"}

    new = copy.deepcopy(OLD)
    rules(new["properties"]["spec"]["properties"])
    spec = new["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        {"rule": "!has(self.strategy) || self.strategy != 'Shadow' || self.replicas > 0"},
        {"rule": "!has(self.name) || self.name != 'x'"},
        {"rule": "has(self.strategy) || self.replicas > 0"},
    ]
    got = [(b.path, b.what) for b in compare_schema(OLD, new)]
    assert got == [
        (
            "spec",
            "validation rule added or changed: !has(self.name) || self.name != 'x'; "
            "has(self.strategy) || self.replicas > 0",
        )
    ]
    # Under a node that kept unknown fields, an object may have stored it: a break.
    extra = copy.deepcopy(OLD)
    extra["properties"]["spec"]["properties"]["extra"]["x-kubernetes-validations"] = [
        {"rule": "!has(self.strategy) || self.strategy != 'Shadow'"}
    ]
    assert [b.what for b in compare_schema(OLD, extra)] == [
        "validation rule added or changed: !has(self.strategy) || self.strategy != 'Shadow'"
    ]


def crd(schema, versions=("v1",)):
    return {
        "spec": {"versions": [{"name": v, "served": True, "schema": {"openAPIV3Schema": schema}} for v in versions]}
    }


def test_versions_compare_one_by_one_and_a_dropped_version_breaks():
    new = copy.deepcopy(OLD)
    del new["properties"]["spec"]["properties"]["name"]
    assert compare(crd(OLD, ("v1", "v2")), crd(new, ("v1",))) == [
        Break("", "version no longer served", "v2"),
        Break("spec.name", "removed", "v1"),
    ]


def test_changelog_names_breaks_in_its_unreleased_section_only():
    changelog = """# Changelog

## Unreleased

- **Breaking**: `spec.name` is gone; use `spec.title`.
- `spec.mode` gains Off.

## 0.1.0

- **Breaking**: `spec.replicas` was lowered.
"""
    allowed = allowed_breaks(changelog)
    assert allowed == {"spec.name", "spec.title"}
    breaks = [
        Break("spec.name", "removed", "v1"),
        Break("spec.name.first", "removed", "v1"),
        Break("spec.replicas", "maximum lowered: 100 -> 10", "v1"),
        Break("spec.names", "removed", "v1"),
    ]
    assert unexcused(breaks, allowed) == [breaks[2], breaks[3]]


def test_the_baseline_is_a_crd_and_the_working_tree_is_compatible_with_it():
    text = (ROOT / "hack" / "crdcompat" / "baseline.yaml").read_text()
    assert text.startswith("# The CRD at revision ")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    old = yaml.load(text, loader)  # noqa: S506 - a safe loader, C or Python
    new = yaml.load((ROOT / "crds" / "timestamppipelines.tspipe.io.yaml").read_text(), loader)  # noqa: S506
    assert old["kind"] == "CustomResourceDefinition"
    breaks = compare(old, new)
    assert unexcused(breaks, allowed_breaks((ROOT / "CHANGELOG.md").read_text())) == []
