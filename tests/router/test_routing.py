"""Pure routing rules, output/DLQ headers, batch planning, topic-result classification, health."""

import json
from collections import namedtuple

import pytest

from tsrouter.batch import Topics, first_offsets, merge_offsets, next_offsets, plan_batch
from tsrouter.chunks import ListChunk
from tsrouter.health import HealthState, health_body, liveness, readiness
from tsrouter.routing import Prefixes, Rejected, Routed, dead_letter_headers, output_headers, route
from tsrouter.topics import classify, still_missing


@pytest.mark.parametrize(
    "value,channel",
    [
        (b"05/17/19 17:56:36", "even"),
        (b"05/17/19 17:56:37", "odd"),
        (b"0", "even"),
        (b"9", "odd"),
        (b"12345678", "even"),
        (b"05/17/19 17:56:38 \t\r\n", "even"),
        (b"x1\x0b\x0c", "odd"),
        (b'"05/17/19 17:56:36"', "even"),
        (b'"05/17/19 17:56:39"  \n', "odd"),
        (b'"ab\\u0031"', "odd"),  # JSON escape for '1'
        ("caf\u00e9 2".encode(), "even"),
    ],
)
def test_routes_by_last_ascii_digit(value, channel):
    r = route(value)
    assert isinstance(r, Routed) and r.channel == channel


def test_default_output_is_the_seed_documented_text():
    assert route(b"05/17/19 17:56:36") == Routed("even", b"Even timestamp:05/17/19 17:56:36")
    assert route(b"05/17/19 17:56:37") == Routed("odd", b"Odd timestamp:05/17/19 17:56:37")


def test_json_string_is_unwrapped_and_prefixes_configurable():
    assert route(b'"05/17/19 17:56:36"') == Routed("even", b"Even timestamp:05/17/19 17:56:36")
    p = Prefixes(b"E|", b"O|")
    assert route(b"7", p) == Routed("odd", b"O|7")
    assert route(b"8", Prefixes(b"", b"")) == Routed("even", b"8")


@pytest.mark.parametrize(
    "value,reason",
    [
        (None, "null value"),
        (b"", "empty value"),
        (b"   \t\r\n", "empty value"),
        (b'""', "empty value"),
        (b'"  "', "empty value"),
        (b"\xff\xfe1", "undecodable"),
        (b"12\xc3", "undecodable"),
        (b"05/17/19 17:56:3x", "no trailing ASCII digit"),
        ("\u0663".encode(), "no trailing ASCII digit"),  # ARABIC-INDIC DIGIT THREE: int() accepts it
        ("12\u00b2".encode(), "no trailing ASCII digit"),  # SUPERSCRIPT TWO: isdigit() is True
        ("1\uff18".encode(), "no trailing ASCII digit"),  # FULLWIDTH DIGIT EIGHT
        ("4\u00a0".encode(), "no trailing ASCII digit"),  # NBSP is not ASCII whitespace
        (b'{"ts": 12}', "no trailing ASCII digit"),
        (b'"\\ud800"', "undecodable"),  # lone surrogate in a JSON string
        (b"12\x00", "no trailing ASCII digit"),
    ],
)
def test_rejects(value, reason):
    r = route(value)
    assert isinstance(r, Rejected) and reason in r.reason


def test_int_accepts_what_we_reject():
    # the seed's is_even_timestamp used int(value[-1:]); these would have been "digits" for int()
    assert int("\u0663") == 3 and "\u00b2".isdigit()


def test_output_headers_carry_over_and_set_text_plain():
    assert output_headers(None) == [("contentType", b"text/plain")]
    h = output_headers([("trace", b"1"), ("contentType", b"application/json")])
    assert h == [("trace", b"1"), ("contentType", b"text/plain")]
    spring = [
        ("contentType", b'"application/json"'),
        ("spring_json_header_types", b'{"contentType":"java.lang.String","id":"java.util.UUID"}'),
        ("id", b'"x"'),
    ]
    h = dict(output_headers(spring))
    assert h["contentType"] == b'"text/plain"'
    assert json.loads(h["spring_json_header_types"]) == {"contentType": "java.lang.String", "id": "java.util.UUID"}
    assert h["id"] == b'"x"'


def test_dead_letter_headers():
    h = dead_letter_headers([("k", b"v"), ("x-original-topic", b"old")], "timeDest", 3, 42, "null value", True)
    assert h == [
        ("k", b"v"),
        ("x-original-topic", b"timeDest"),
        ("x-original-partition", b"3"),
        ("x-original-offset", b"42"),
        ("x-exception-message", b"null value"),
        ("x-original-value-null", b"true"),
    ]


TP = namedtuple("TP", "topic partition")


def test_plan_batch_keeps_order_partition_keys_and_dead_letters():
    topics = Topics("ev", "od", "dlq")
    batch = {
        TP("in", 0): [(10, 1000, b"k", b"t2", [("h", b"1")]), (11, 1001, None, None, ())],
        TP("in", 5): [(7, -1, None, b"t3", ())],
    }
    plan = plan_batch(batch, topics, Prefixes(), {"ev": 4, "od": 4, "dlq": 1})
    assert [(o.topic, o.channel, o.partition, o.key) for o in plan] == [
        ("ev", "even", 0, b"k"),
        ("dlq", "deadLetter", 0, None),
        ("od", "odd", 1, None),
    ]
    assert plan[0].value == b"Even timestamp:t2" and plan[0].headers == [("h", b"1"), ("contentType", b"text/plain")]
    assert plan[1].value == b"" and ("x-original-offset", b"11") in plan[1].headers and plan[1].reason == "null value"
    assert plan[0].source_timestamp_ms == 1000 and plan[2].source_timestamp_ms is None
    # unknown partition count: let the producer pick
    assert plan_batch(batch, topics, Prefixes(), {})[0].partition is None
    polled = {tp: [ListChunk(records)] for tp, records in batch.items()}  # as a poll hands them out
    assert next_offsets(polled) == {TP("in", 0): 12, TP("in", 5): 8}
    assert first_offsets(polled) == {TP("in", 0): 10, TP("in", 5): 7}
    assert merge_offsets({TP("in", 0): 20}, {TP("in", 0): 12, TP("in", 5): 8}) == {TP("in", 0): 20, TP("in", 5): 8}


def test_topic_creation_outcomes():
    result = {
        "topics": [
            {"name": "a", "error_code": 0},
            {"name": "b", "error_code": 36},
            {"name": "c", "error_code": 29},
            {"name": "d", "error_code": 38, "error_message": "bad rf"},
        ]
    }
    out = classify(result)
    assert out == {"a": "created", "b": "exists", "c": "forbidden", "d": "error:38 bad rf"}
    assert still_missing(out, existing={"c"}) == ["d"]
    assert still_missing(out, existing={"c", "d"}) == []


def test_health_states():
    t = [100.0]
    h = HealthState(clock=lambda: t[0])
    s = h.snapshot()
    assert liveness(s, t[0], 60) and not readiness(s)
    body, up = health_body(s, t[0], 60)
    assert not up and body["status"] == "DOWN" and body["components"]["kafka"]["status"] == "DOWN"
    h.set_kafka(True, "connected")
    h.set_assigned(2)
    body, up = health_body(h.snapshot(), t[0], 60)
    assert up and readiness(h.snapshot()) and body["components"]["kafka"]["details"]["assignedPartitions"] == 2
    # An idle group member (more replicas than partitions, or the new pod of a rolling
    # update while the old one still holds the partition) is ready; a closed consumer is not.
    h.set_assigned(0)
    assert readiness(h.snapshot())
    h.set_left()
    assert not readiness(h.snapshot())
    h.set_assigned(2)
    t[0] += 61  # loop stalled
    assert not liveness(h.snapshot(), t[0], 60)
    h.tick()
    assert liveness(h.snapshot(), t[0], 60)
    h.set_kafka(False, "broker unreachable")
    assert not readiness(h.snapshot())
    h.set_kafka(True, "connected")
    h.set_stopping()
    assert not readiness(h.snapshot())


class F:
    def __init__(self, done, ok=True):
        self.is_done, self._ok = done, ok
        self.exception = None if ok else RuntimeError("nope")

    def succeeded(self):
        return self.is_done and self._ok


def test_settle_commits_only_a_prefix_of_acknowledged_batches():
    from tsrouter.batch import Sent, rewind_offsets, settle

    a, b = TP("in", 0), TP("in", 1)
    s1 = Sent({a: 5}, {a: 0}, [], [F(True), F(True)])
    s2 = Sent({b: 9}, {b: 3}, [], [F(True), F(False)])  # still in flight
    s3 = Sent({a: 8}, {a: 5}, [], [F(True)])  # done, but after s2
    assert settle([s1, s2, s3]) == (1, None)
    s2.futures[1].is_done = True
    assert settle([s1, s2, s3]) == (3, None)
    s2b = Sent({b: 9}, {b: 3}, [], [F(True), F(True, ok=False)])
    assert settle([s1, s2b, s3]) == (1, 1)
    assert rewind_offsets([s2b, s3]) == {b: 3, a: 5}
    assert settle([]) == (0, None)
    s4 = Sent({a: 12}, {a: 8}, [], [F(False), F(True, ok=False)])  # failed while a sibling is pending
    assert settle([s4]) == (0, 0)
