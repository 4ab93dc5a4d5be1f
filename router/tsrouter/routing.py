"""Pure routing rules: which channel a record goes to, and what is written there.

No Kafka here: the loop in ``app.py`` feeds values and headers in and sends what comes out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "DEAD_LETTER",
    "EVEN",
    "ODD",
    "ROUTED",
    "Prefixes",
    "Rejected",
    "Routed",
    "dead_letter_headers",
    "output_headers",
    "route",
]

EVEN = "even"
ODD = "odd"
ROUTED = (EVEN, ODD)  # the channels, in the order they are reported
DEAD_LETTER = "deadLetter"  # the third channel: what cannot be routed (the operator's name too)
# ASCII only: str.isdigit()/int() also accept '٣', '²', '９', which are not timestamps' digits.  # noqa: RUF003
_DIGITS = "0123456789"
_ASCII_WS = " \t\n\r\x0b\x0c"


@dataclass(frozen=True)
class Prefixes:
    even: bytes = b"Even timestamp:"
    odd: bytes = b"Odd timestamp:"


@dataclass(frozen=True)
class Routed:
    channel: str  # EVEN or ODD
    payload: bytes


@dataclass(frozen=True)
class Rejected:
    reason: str


DEFAULT_PREFIXES = Prefixes()


def _judge(text: str) -> str | None:
    """Channel for a text by its last non-whitespace character, or None."""
    stripped = text.rstrip(_ASCII_WS)
    if not stripped:
        return None
    last = stripped[-1]
    if last not in _DIGITS:
        return None
    return EVEN if (ord(last) - 48) % 2 == 0 else ODD


def route(value: bytes | None, prefixes: Prefixes = DEFAULT_PREFIXES) -> Routed | Rejected:
    if value is None:
        return Rejected("null value")
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(f"undecodable value: not UTF-8 (byte {exc.start})")
    if not text.strip(_ASCII_WS):
        return Rejected("empty value")
    body = value
    stripped = text.strip(_ASCII_WS)
    if stripped.startswith('"') and stripped.endswith('"') and len(stripped) >= 2:
        # A JSON string (Spring's application/json): judge and forward the string inside.
        try:
            inner = json.loads(stripped)
        except ValueError:
            inner = None
        if isinstance(inner, str):
            if not inner.strip(_ASCII_WS):
                return Rejected("empty value (empty JSON string)")
            text = inner
            try:
                body = inner.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates from \ud800 escapes
                return Rejected("undecodable value: JSON string is not valid Unicode")
    channel = _judge(text)
    if channel is None:
        last = text.rstrip(_ASCII_WS)[-1]
        return Rejected(f"no trailing ASCII digit (last character {last!r})")
    prefix = prefixes.even if channel == EVEN else prefixes.odd
    return Routed(channel, prefix + bytes(body))


_CT = "contentType"
_JSON_TYPES = "spring_json_header_types"


def output_headers(headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """Carry the input headers over with ``contentType: text/plain``.

    Spring's Kafka header mapper JSON-encodes header values it lists in
    ``spring_json_header_types``; when that map is present, contentType is written the
    same way so Spring consumers decode it, otherwise as raw bytes.
    """
    if not headers:
        return [(_CT, b"text/plain")]
    headers = list(headers)
    kept = [(k, v) for k, v in headers if k != _CT and k != _JSON_TYPES]
    types_raw = next((v for k, v in headers if k == _JSON_TYPES), None)
    if types_raw is not None:
        try:
            types = json.loads(types_raw)
            if not isinstance(types, dict):
                raise ValueError
        except ValueError:
            return kept + [(_JSON_TYPES, types_raw), (_CT, b"text/plain")]
        types[_CT] = "java.lang.String"
        return kept + [(_CT, b'"text/plain"'), (_JSON_TYPES, json.dumps(types, separators=(",", ":")).encode())]
    return kept + [(_CT, b"text/plain")]


def dead_letter_headers(
    headers: list[tuple[str, bytes]] | None,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    value_was_null: bool = False,
) -> list[tuple[str, bytes]]:
    """Input headers plus where the record came from and why it was rejected.

    Names follow the Spring Cloud Stream Kafka binder's DLQ headers (``x-original-*``,
    ``x-exception-message``); numbers are written as decimal text.
    """
    ours = (
        "x-original-topic",
        "x-original-partition",
        "x-original-offset",
        "x-exception-message",
        "x-original-value-null",
    )
    out = [(k, v) for k, v in (headers or []) if k not in ours]
    out += [
        ("x-original-topic", topic.encode()),
        ("x-original-partition", str(partition).encode()),
        ("x-original-offset", str(offset).encode()),
        ("x-exception-message", reason.encode("utf-8")),
    ]
    if value_was_null:
        out.append(("x-original-value-null", b"true"))
    return out
