"""Is the CRD still compatible with an earlier one? (pure; `make lint` runs `python -m
tspipe.crdcompat`.)

An object the earlier CRD accepted must stay valid, and a field a client reads must
stay where it was: so, per served version, no field removed (a rename is a removal),
no type changed, no enum value removed, no bound tightened (minimum, maximum, lengths,
item and property counts, a pattern or format added or changed, a field newly
required, a nullable one no more, unknown fields no longer kept), no validation rule
added to or changed on a field that existed. A new field, a loosened bound, a new enum
value are fine, and so is a rule that holds by its first clause for every object without
a field the earlier CRD did not have (`!has(self.new) || ...`): the earlier API server
pruned that field, so no stored object has it.

A break is allowed when CHANGELOG.md's Unreleased section names its path in a
breaking-change line: `- **Breaking**: ... \\`spec.kafka.foo\\` ...`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Bounds that tighten when they go up (a lower bound) or down (an upper bound).
LOWER_BOUNDS = ("minimum", "minLength", "minItems", "minProperties")
UPPER_BOUNDS = ("maximum", "maxLength", "maxItems", "maxProperties")
# Keywords whose addition or change can only reject more (their meaning cannot be ordered).
OPAQUE = ("pattern", "format", "multipleOf", "anyOf", "oneOf", "allOf", "not")
# Flags whose removal rejects (or prunes) what was accepted, and flags whose setting does.
KEPT_FLAGS = ("x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "nullable")
FLAGS_THAT_NARROW = ("exclusiveMinimum", "exclusiveMaximum", "uniqueItems")
BREAKING_MARK = "**Breaking**"


@dataclass(frozen=True, order=True)
class Break:
    path: str  # e.g. "spec.kafka.brokers" (in version `version`)
    what: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.version} {self.path}: {self.what}" if self.version else f"{self.path}: {self.what}"


def compare(old_crd: dict[str, Any], new_crd: dict[str, Any]) -> list[Break]:
    """What in `new_crd` breaks objects or clients written for `old_crd`."""
    old_versions = {v["name"]: v for v in old_crd.get("spec", {}).get("versions") or []}
    new_versions = {v["name"]: v for v in new_crd.get("spec", {}).get("versions") or []}
    out: list[Break] = []
    for name, old in old_versions.items():
        if not old.get("served", True):
            continue
        new = new_versions.get(name)
        if new is None or not new.get("served", True):
            out.append(Break("", "version no longer served", name))
            continue
        old_schema = (old.get("schema") or {}).get("openAPIV3Schema") or {}
        new_schema = (new.get("schema") or {}).get("openAPIV3Schema") or {}
        out.extend(Break(b.path, b.what, name) for b in compare_schema(old_schema, new_schema))
    return sorted(out)


def compare_schema(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[Break]:
    """The breaks between two OpenAPI v3 schemas of one field (and its fields, recursively)."""
    here = path or "(root)"
    if old.get("type") != new.get("type"):
        # What is below a changed type does not compare.
        return [Break(here, f"type changed: {old.get('type')} -> {new.get('type')}")]
    out = [Break(here, what) for what in _keyword_breaks(old, new) + _bound_breaks(old, new)]
    old_props, new_props = old.get("properties") or {}, new.get("properties") or {}
    for name, sub in old_props.items():
        sub_path = f"{path}.{name}" if path else name
        if name in new_props:
            out.extend(compare_schema(sub, new_props[name], sub_path))
        else:
            out.append(Break(sub_path, "removed"))
    if _open(old) and not _open(new) and not old_props:
        out.append(Break(here, "no longer accepts arbitrary keys"))
    old_ap, new_ap = old.get("additionalProperties"), new.get("additionalProperties")
    if isinstance(old_ap, dict) and isinstance(new_ap, dict):
        out.extend(compare_schema(old_ap, new_ap, f"{path}.*" if path else "*"))
    elif isinstance(old_ap, dict) and new_ap is False:
        out.append(Break(here, "additionalProperties no longer allowed"))
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        out.extend(compare_schema(old["items"], new["items"], f"{path}[]"))
    return out


def _keyword_breaks(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What one node's keywords (not its bounds, not its fields) reject that they accepted."""
    out = [f"{key} no longer set" for key in KEPT_FLAGS if old.get(key) and not new.get(key)]
    if "enum" in new and "enum" not in old:
        out.append("enum added")
    elif "enum" in new:
        gone = [v for v in old["enum"] if v not in new["enum"]]
        if gone:
            out.append(f"enum values removed: {', '.join(map(repr, gone))}")
    out += [
        f"{key} {'changed' if key in old else 'added'}"
        for key in OPAQUE
        if key in new and _canon(new[key]) != _canon(old.get(key))
    ]
    rules_old = {_canon(r) for r in old.get("x-kubernetes-validations") or []}
    added = [
        r
        for r in new.get("x-kubernetes-validations") or []
        if _canon(r) not in rules_old and not _guarded_by_new_field(str(r.get("rule", "")), old)
    ]
    if added:
        out.append(f"validation rule added or changed: {'; '.join(str(r.get('rule')) for r in added)}")
    newly_required = sorted(set(new.get("required") or []) - set(old.get("required") or []))
    if newly_required:
        out.append(f"newly required: {', '.join(newly_required)}")
    return out


_GUARD = re.compile(r"\s*!\s*has\(\s*self\.([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*\|\|")


def _guarded_by_new_field(rule: str, old: dict[str, Any]) -> bool:
    """A rule `!has(self.f) || ...` where `f` is not a field of the earlier schema: true
    for every object the earlier CRD could have stored (it pruned `f`). Only when that
    schema prunes unknown fields (an object kept with `f` would not be pruned)."""
    m = _GUARD.match(rule)
    if m is None or old.get("x-kubernetes-preserve-unknown-fields"):
        return False
    return m.group(1) not in (old.get("properties") or {})


def _bound_breaks(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = [
        f"{key} raised: {old.get(key, 'none')} -> {new[key]}"
        for key in LOWER_BOUNDS
        if key in new and (key not in old or new[key] > old[key])
    ]
    out += [
        f"{key} lowered: {old.get(key, 'none')} -> {new[key]}"
        for key in UPPER_BOUNDS
        if key in new and (key not in old or new[key] < old[key])
    ]
    return out + [f"{key} set" for key in FLAGS_THAT_NARROW if new.get(key) and not old.get(key)]


def _open(schema: dict[str, Any]) -> bool:
    """Accepts keys it does not list (a map, or unknown fields preserved)."""
    return bool(schema.get("x-kubernetes-preserve-unknown-fields")) or isinstance(
        schema.get("additionalProperties"), dict
    )


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def allowed_breaks(changelog: str) -> set[str]:
    """The field paths CHANGELOG.md's Unreleased section names as breaking changes: in
    backticks on a line marked **Breaking**."""
    section = re.search(r"^## Unreleased\s*$(.*?)(?=^## |\Z)", changelog, re.M | re.S)
    paths: set[str] = set()
    for line in (section.group(1) if section else "").splitlines():
        if BREAKING_MARK in line:
            paths.update(re.findall(r"`([^`\s]+)`", line))
    return paths


def unexcused(breaks: list[Break], allowed: set[str]) -> list[Break]:
    """The breaks CHANGELOG.md does not name (a named path also covers the fields below it)."""

    def named(b: Break) -> bool:
        return any(
            b.path == a or b.path.startswith(a + ".") or b.path.startswith(a + "[") or (b.version and b.version == a)
            for a in allowed
        )

    return [b for b in breaks if not named(b)]
