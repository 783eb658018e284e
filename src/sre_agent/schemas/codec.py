"""The one orjson codec: validate bytes into a model once; encode models to bytes.

>>> from sre_agent.schemas import Alert
>>> a = decode(Alert, b'{"fingerprint": "f1", "name": "HighLatency"}')
>>> a.status, a.time.tzinfo is not None
('firing', True)
>>> try:
...     decode(Alert, b'{"name": 1')
... except DecodeError as exc:
...     print(exc.reason)
invalid JSON: ...
>>> try:  # valid JSON and schema, but no stage could re-encode it
...     decode(Alert, b'{"fingerprint": "f", "name": "n", "schema_version": 1' + b'0' * 20 + b'}')
... except DecodeError as exc:
...     print(exc.reason)
schema violation (Alert): schema_version: Integer exceeds 64-bit range
"""

from __future__ import annotations

import datetime
import enum
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

__all__ = ["MAX_MESSAGE_BYTES", "DecodeError", "decode", "encode", "export_json_schemas"]

M = TypeVar("M", bound=BaseModel)

#: anything larger is rejected before parsing (hostile-input guard)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


#: 19+ digits in a row: possibly an integer beyond 64 bits (the slow check runs only then)
_LONG_DIGITS_B = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_S = re.compile(r"[0-9]{19}")
#: types whose values never hold an int once validated
_LEAVES = (str, float, bytes, type(None), datetime.datetime, datetime.date, datetime.time,
           datetime.timedelta)
#: the integers orjson can encode
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _has_int(tp: Any, seen: set[Any]) -> bool:
    """Whether values of type ``tp`` may hold an ``int`` (or anything: ``Any``)."""
    if tp is Any or tp is object or tp is int or isinstance(tp, typing.TypeVar):
        return True
    if isinstance(tp, type):
        if issubclass(tp, bool) or issubclass(tp, _LEAVES):
            return False  # an integer literal becomes a float, a date, or an error
        if issubclass(tp, int):  # IntEnum and the like
            return True
        if issubclass(tp, enum.Enum):
            return False
        if tp in seen:
            return False
        seen.add(tp)
        if issubclass(tp, BaseModel):
            return any(_has_int(f.annotation, seen) for f in tp.model_fields.values())
        if hasattr(tp, "__total__"):  # a TypedDict
            hints = typing.get_type_hints(tp, include_extras=True)
            return any(_has_int(h, seen) for h in hints.values())
        return True  # a class we do not know: be safe
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return False
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        if base is int and _in_range(meta):
            return False  # validation keeps it within what orjson encodes
        return _has_int(base, seen)
    if origin is not None:  # unions, containers
        return any(_has_int(a, seen) for a in typing.get_args(tp) if a is not Ellipsis)
    return True  # unknown typing construct: be safe


def _in_range(meta: list[Any]) -> bool:
    """Whether the constraints ``meta`` of an ``Annotated[int, ...]`` (annotated-types
    bounds, directly or in a pydantic ``Field``) keep it within 64 bits."""
    lo = hi = None
    for m in meta:
        for c in [m, *getattr(m, "metadata", ())]:
            for name in ("ge", "gt"):
                v = getattr(c, name, None)
                if isinstance(v, int) and not isinstance(v, bool):
                    lo = v if lo is None else max(lo, v)
            for name in ("le", "lt"):
                v = getattr(c, name, None)
                if isinstance(v, int) and not isinstance(v, bool):
                    hi = v if hi is None else min(hi, v)
    return lo is not None and hi is not None and _INT_MIN <= lo and hi <= _INT_MAX


def _int_plan(model: type[BaseModel]) -> tuple[tuple[str, ...], bool]:
    """(top-level int fields, whether an int may hide deeper) of ``model``, cached.

    Checking the few top-level ints of a parsed event replaces a regex over the
    whole message for models such as ``MetricBatch``, whose nested values are
    strings and floats only (a float field turns any integer literal into a float).
    """
    plan = _PLANS.get(model)
    if plan is None:
        top: list[str] = []
        deep = False
        for name, f in model.model_fields.items():
            tp = f.annotation
            args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union,
                                                                  types.UnionType) else (tp,)
            if all(a is int or a is type(None) for a in args):
                top.append(name)
            elif _has_int(tp, set()):
                deep = True
        plan = _PLANS[model] = (tuple(top), deep)
    return plan


_PLANS: dict[type[BaseModel], tuple[tuple[str, ...], bool]] = {}


class DecodeError(ValueError):
    """Bytes that are not a valid event; ``reason`` is safe to put on a DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _loc(loc: tuple[int | str, ...]) -> str:
    """Error location, each part cut short: keys of hostile input can be huge."""
    parts = [p if len(p := str(x)) <= 64 else p[:61] + "..." for x in loc[:12]]
    return ".".join(parts) or "<root>"


def decode(model: type[M], data: bytes | str) -> M:
    """Parse and validate ``data`` as ``model``; raise :class:`DecodeError`."""
    if data is None:
        raise DecodeError("empty message")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message too large: {len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        event = model.model_validate_json(data)
    except ValidationError as exc:
        errs = exc.errors(include_url=False, include_input=False)[:5]
        if errs and errs[0]["type"] == "json_invalid":
            raise DecodeError(f"invalid JSON: {errs[0]['msg']}") from None
        detail = "; ".join(f"{_loc(e['loc'])}: {e['msg'][:200]}" for e in errs)
        raise DecodeError(f"schema violation ({model.__name__}): {detail}") from None
    except Exception as exc:  # a validator that raised something else: still bad input
        raise DecodeError(f"schema violation ({model.__name__}): "
                          f"{type(exc).__name__}: {str(exc)[:200]}") from None
    # pydantic accepts integers of any size, orjson encodes 64-bit ones only: an event
    # every stage could not forward is rejected here, not downstream
    top, deep = _int_plan(model)
    for name in top:
        v = getattr(event, name)
        if v is not None and not _INT_MIN <= v <= _INT_MAX:
            raise DecodeError(f"schema violation ({model.__name__}): {name}: "
                              "Integer exceeds 64-bit range")
    if deep and (_LONG_DIGITS_B if isinstance(data, bytes | bytearray)
                 else _LONG_DIGITS_S).search(data):
        try:
            encode(event)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise DecodeError(f"schema violation ({model.__name__}): {exc}") from None
    return event


def encode(event: BaseModel) -> bytes:
    """Serialize a model to JSON bytes with orjson (UTC ISO timestamps)."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=False))


def export_json_schemas(directory: str | Path) -> list[Path]:
    """Write one JSON Schema per topic into ``directory``; return the paths."""
    from . import TOPIC_MODELS

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for topic, model in sorted(TOPIC_MODELS.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"sre-agent/{topic}/v{model.model_fields['schema_version'].default}"
        schema["x-topic"] = topic
        path = out / f"{topic}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
