"""Hostile input against every topic's decoder (hypothesis).

The promise: whatever bytes arrive on a topic, :func:`sre_agent.schemas.decode`
ends in a :class:`DecodeError` (the stage sends it to the DLQ) or a valid model
that every later stage can forward (it re-encodes and decodes again) -- never
another exception, never unbounded memory.

Inputs: random bytes, mutated valid events (a field replaced by a hostile value,
removed, or joined by junk), hostile whole documents (deep nesting, huge
strings, NaN/Inf, 64-bit-overflowing integers, lone surrogates, far-future and
clock-skewed timestamps, label-cardinality explosions) and oversized bodies.

``SRE_AGENT_FUZZ_EXAMPLES`` (default 150 per topic and strategy) scales the run;
every input is checked by the test that drew it (no test depends on another);
hypothesis counts the inputs tried::

    SRE_AGENT_FUZZ_EXAMPLES=3000 python -m pytest tests/unit/test_fuzz_decoders.py -q \
        --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sre_agent.schemas import TOPIC_MODELS, DeadLetter, DecodeError, decode, encode
from sre_agent.schemas.codec import MAX_MESSAGE_BYTES
from tests.chaos.hostile import T0, VALID, dumps, json_values, label_explosion

EXAMPLES = int(os.environ.get("SRE_AGENT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 150,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

# ------------------------------------------------------------------ mutations
def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any, op: str) -> Any:
    if not path:
        return value
    doc = json.loads(json.dumps(doc))  # deep copy
    node = doc
    for part in path[:-1]:
        node = node[part]
    last = path[-1]
    if op == "delete" and isinstance(node, dict):
        del node[last]
    elif op == "extra" and isinstance(node, dict):
        node[f"extra_{last}"] = value
    else:
        node[last] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, topic: str) -> bytes:
    base = VALID[topic]
    path = draw(st.sampled_from(_paths(base)))
    op = draw(st.sampled_from(["replace", "replace", "delete", "extra"]))
    value = draw(st.one_of(json_values, st.just(label_explosion(draw(st.integers(0, 5000))))))
    return dumps(_replace(base, path, value, op), draw(st.integers(0, 1)))


@st.composite
def raw_junk(draw: st.DrawFn, topic: str) -> bytes:
    base = json.dumps(VALID[topic]).encode()
    kind = draw(st.sampled_from(["bytes", "truncate", "flip", "doc", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base)))]
    if kind == "flip":
        i = draw(st.integers(0, len(base) - 1))
        return base[:i] + bytes([draw(st.integers(0, 255))]) + base[i + 1:]
    if kind == "deep":
        d = draw(st.integers(1, 100_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return opener * d + b"1" + closer * d
    return dumps(draw(json_values), draw(st.integers(0, 1)))


# ------------------------------------------------------------------ the property
def check(topic: str, data: bytes) -> str:
    """Decode ``data``; only DecodeError or a forwardable model are acceptable."""
    model = TOPIC_MODELS[topic]
    try:
        event = decode(model, data)
    except DecodeError as exc:
        assert exc.reason and len(exc.reason) < 4096
        outcome = "dlq"
    else:
        assert isinstance(event, model)
        once = encode(event)  # a stage forwarding it must not crash
        again = decode(model, once)  # and the next stage must accept it
        assert encode(again) == once
        outcome = "valid"
    return outcome


def test_every_topic_has_a_valid_seed() -> None:
    assert set(VALID) == set(TOPIC_MODELS)
    for topic, doc in VALID.items():
        assert check(topic, json.dumps(doc).encode()) == "valid", topic


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
@FUZZ
@given(data=st.data())
def test_mutated_events_never_crash_the_decoder(topic: str, data: st.DataObject) -> None:
    check(topic, data.draw(mutated(topic)))


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
@FUZZ
@given(data=st.data())
def test_junk_never_crashes_the_decoder(topic: str, data: st.DataObject) -> None:
    check(topic, data.draw(raw_junk(topic)))


# ------------------------------------------------------------------ named hostile cases
def _with(topic: str, **fields: Any) -> bytes:
    return json.dumps({**VALID[topic], **fields}, allow_nan=True).encode()


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_timestamps_outside_utc_range_go_to_dlq(topic: str) -> None:
    # valid ISO 8601, not representable in UTC: used to raise OverflowError
    for ts in ("9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+23:00"):
        assert check(topic, _with(topic, time=ts)) == "dlq"


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_integers_beyond_64_bits_go_to_dlq(topic: str) -> None:
    # pydantic accepts them, orjson cannot forward them: rejected at the door
    big = 2**64 + 1
    assert check(topic, _with(topic, schema_version=big)) == "dlq"


def test_nan_and_inf_are_rejected_in_numbers() -> None:
    for v in ("NaN", "Infinity", "-Infinity", "1e400"):
        doc = (b'{"series": [{"name": "m", "labels": {}, "points": [[1763000000, '
               + v.encode() + b"]]}]}")
        assert check("metrics", doc) == "dlq", v
        anomaly = json.dumps(VALID["anomalies"]).replace("900.0", v).encode()
        assert check("anomalies", anomaly) == "dlq", v


def test_metric_label_cardinality_is_bounded_per_series() -> None:
    doc = {**VALID["metrics"], "series": [
        {"name": "m", "labels": label_explosion(33), "points": [[T0, 1.0]]}]}
    assert check("metrics", json.dumps(doc).encode()) == "dlq"
    doc["series"][0]["labels"] = label_explosion(32)
    assert check("metrics", json.dumps(doc).encode()) == "valid"


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_oversized_bodies_are_rejected_before_parsing(topic: str) -> None:
    body = b'{"pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    t = time.perf_counter()
    assert check(topic, body) == "dlq"
    assert time.perf_counter() - t < 0.5


def _decode_cost(topic: str, body: bytes) -> tuple[float, float]:
    """CPU seconds and traced peak bytes of decoding alone (orjson's encode buffer
    over-reserves untouched pages, which tracemalloc would count as use)."""
    tracemalloc.start()
    t = time.process_time()  # CPU time: other load on the machine does not count
    try:
        try:
            decode(TOPIC_MODELS[topic], body)
        except DecodeError:
            pass
        seconds = time.process_time() - t
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    check(topic, body)
    return seconds, peak


@pytest.mark.parametrize("shape", ["many-series", "many-labels", "long-strings", "deep-details"])
def test_worst_case_bodies_under_the_limit_stay_bounded(shape: str) -> None:
    """Largest accepted inputs: decoding memory is a small multiple of the body size."""
    limit = MAX_MESSAGE_BYTES - 1024
    if shape == "many-series":
        topic, one = "metrics", '{"name":"m","labels":{"p":"%d"},"points":[[1763000000,1]]}'
        n = min(100_000, limit // (len(one) + 6))
        body = ('{"series":[' + ",".join(one % i for i in range(n)) + "]}").encode()
    elif shape == "many-labels":
        topic = "alerts"
        labels = {f"k{i}": "v" for i in range(limit // 16)}
        body = _with(topic, labels=labels)
    elif shape == "long-strings":
        topic = "logs"
        body = _with(topic, message="m" * 16384, labels={f"k{i}": "v" * 1000
                                                           for i in range(limit // 1020)})
    else:
        topic = "audit"
        nested: Any = 1
        for _ in range(150):
            nested = {"n": nested, "pad": "x" * 100}
        body = _with(topic, details={f"d{i}": nested for i in range(200)})
    assert len(body) <= MAX_MESSAGE_BYTES
    seconds, peak = _decode_cost(topic, body)
    # bounded: at most ~16 bytes of Python objects per byte of input, and fast
    assert peak < 16 * len(body) + 16 * 2**20, (shape, peak, len(body))
    assert seconds < 10, (shape, seconds)


@FUZZ
@given(value=st.one_of(st.none(), st.binary(max_size=2000), st.text(max_size=200),
                       st.integers(0, 3).map(lambda k: b"\xff" * (MAX_MESSAGE_BYTES >> k))),
       error=st.text(max_size=300) | st.just("e" * 100_000),
       key=st.none() | st.text(max_size=100) | st.just("k" * 70_000),
       offset=st.none() | st.integers(0, 2**63 - 1))
def test_a_dead_letter_can_always_be_made_and_sent(value: Any, error: str, key: str | None,
                                                   offset: int | None) -> None:
    """The DLQ path itself must not fail: any value, error, key -> a producible event."""
    dl = DeadLetter.of("metrics", value, error, message_key=key, partition=0, offset=offset,
                       stage="fuzz")
    body = encode(dl)
    assert len(body) < 900 * 1024  # under Kafka's default 1 MiB message limit
    back = decode(DeadLetter, body)
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else (value or b"")
    assert back.original() == raw[: len(back.original())] and back.original_size == len(raw)

