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
schema violation (Alert): Integer exceeds 64-bit range
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

__all__ = ["MAX_MESSAGE_BYTES", "DecodeError", "decode", "encode", "export_json_schemas"]

M = TypeVar("M", bound=BaseModel)

#: anything larger is rejected before parsing (hostile-input guard)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


#: 19+ digits in a row: possibly an integer beyond 64 bits (the slow check runs only then)
_LONG_DIGITS_B = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_S = re.compile(r"[0-9]{19}")


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
    if (_LONG_DIGITS_B if isinstance(data, bytes | bytearray) else _LONG_DIGITS_S).search(data):
        # pydantic accepts integers of any size, orjson encodes 64-bit ones only:
        # an event every stage could not forward is rejected here, not downstream
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
