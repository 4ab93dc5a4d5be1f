"""Scalar spec fields, declared once: the model parses with them, the CRD is generated from them.

Each field carries its JSON name, the model attribute it fills, its description,
default and bounds (kubebuilder's idea: the types drive the schema), so the parser
and the OpenAPI schema cannot disagree. `parse` applies exactly the schema's rules
and raises PipelineError naming the field; a null counts as absent, as on the API
server, which prunes nulls of non-nullable fields before defaulting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, TypeVar


class PipelineError(ValueError):
    """An invalid pipeline; `field` is the dotted path of the offending field."""

    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


@dataclass(frozen=True)
class Str:
    name: str  # JSON field name
    attr: str  # model attribute
    description: str  # may use {which}, filled in by the CRD generator (e.g. even/odd)
    default: str | None = None
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None  # a regular expression both Python and the API server accept
    enum: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()  # values the pattern allows but the field does not (a CEL rule)
    forbidden_message: str = ""
    invalid: str | None = None  # the message for a bad length or pattern ({value!r} available)

    def with_default(self, default: str) -> Str:
        return replace(self, default=default)

    def parse_optional(self, obj: dict[str, Any], path: str) -> str | None:
        where = f"{path}.{self.name}"
        value = obj.get(self.name)
        if value is None:
            if self.required:
                raise PipelineError(where, "required")
            return self.default
        if not isinstance(value, str):
            raise PipelineError(where, "must be a string")
        if self.enum and value not in self.enum:
            raise PipelineError(where, f"must be one of {', '.join(self.enum)}")
        problem = self.problem(value)
        if problem:
            raise PipelineError(where, self.invalid.format(value=value) if self.invalid else problem)
        return value

    def parse(self, obj: dict[str, Any], path: str) -> str:
        value = self.parse_optional(obj, path)
        assert value is not None, f"{self.name} has neither a default nor required=True"
        return value

    def problem(self, value: str) -> str | None:
        """What is wrong with a string value by the schema's length and pattern rules."""
        if self.min_length is not None and len(value) < self.min_length:
            return "must not be empty" if self.min_length == 1 else f"must be at least {self.min_length} characters"
        if self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        # fullmatch: the API server's RE2 `$` is the end of the text, Python's also matches before a final newline.
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f"must match {self.pattern}"
        if value in self.forbidden:
            return self.forbidden_message
        return None

    def schema(self, **context: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "description": self.description.format(**context)}
        if self.default is not None:
            out["default"] = self.default
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.enum:
            out["enum"] = list(self.enum)
        if self.forbidden:
            rule = " && ".join(f"self != '{v}'" for v in self.forbidden)
            out["x-kubernetes-validations"] = [{"rule": rule, "message": self.forbidden_message}]
        return out


_N = TypeVar("_N", int, float)


def _within(value: _N, minimum: float, maximum: float, where: str) -> _N:
    """`value` if within the schema's bounds, else the API server's kind of message."""
    if not minimum <= value <= maximum:
        raise PipelineError(where, f"must be between {minimum} and {maximum}, got {value}")
    return value


@dataclass(frozen=True)
class Int:
    name: str
    attr: str
    description: str
    default: int  # ignored when required
    minimum: int
    maximum: int
    required: bool = False

    def parse(self, obj: dict[str, Any], path: str) -> int:
        value = obj.get(self.name)
        if value is None:
            if self.required:
                raise PipelineError(f"{path}.{self.name}", "required")
            return self.default
        if isinstance(value, bool) or not isinstance(value, int):
            raise PipelineError(f"{path}.{self.name}", "must be an integer")
        return _within(value, self.minimum, self.maximum, f"{path}.{self.name}")

    def schema(self, **context: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "integer",
            "format": "int32",
            "description": self.description.format(**context),
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.required:
            del out["default"]
        return out


@dataclass(frozen=True)
class Bool:
    name: str
    attr: str
    description: str
    default: bool

    def parse(self, obj: dict[str, Any], path: str) -> bool:
        value = obj.get(self.name)
        if value is None:
            return self.default
        if not isinstance(value, bool):
            raise PipelineError(f"{path}.{self.name}", "must be a boolean")
        return value

    def schema(self, **context: str) -> dict[str, Any]:
        return {"type": "boolean", "default": self.default, "description": self.description.format(**context)}


@dataclass(frozen=True)
class Number:
    """A real number within bounds (a ratio, say); integers are accepted, as JSON has one number type."""

    name: str
    attr: str
    description: str
    default: float
    minimum: float
    maximum: float

    def parse(self, obj: dict[str, Any], path: str) -> float:
        value = obj.get(self.name)
        if value is None:
            return self.default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PipelineError(f"{path}.{self.name}", "must be a number")
        return float(_within(value, self.minimum, self.maximum, f"{path}.{self.name}"))

    def schema(self, **context: str) -> dict[str, Any]:
        return {
            "type": "number",
            "description": self.description.format(**context),
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }


Field = Str | Int | Bool | Number


def parse_all(fields: tuple[Field, ...], obj: dict[str, Any], path: str) -> dict[str, Any]:
    """{attr: value} for every field, in declaration order (so the first error is the first field's)."""
    return {f.attr: f.parse_optional(obj, path) if isinstance(f, Str) else f.parse(obj, path) for f in fields}


def required(fields: tuple[Field, ...]) -> list[str]:
    """The names of the required fields (the schema's `required` list)."""
    return [f.name for f in fields if isinstance(f, Str | Int) and f.required]


def names(fields: tuple[Field, ...]) -> set[str]:
    return {f.name for f in fields}


def properties(fields: tuple[Field, ...], **context: str) -> dict[str, Any]:
    """The fields as OpenAPI schema properties, in declaration order."""
    return {f.name: f.schema(**context) for f in fields}
