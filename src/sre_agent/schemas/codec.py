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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

__all__ = ["MAX_MESSAGE_BYTES", "DecodeError", "decode", "encode", "export_json_schemas"]

M = TypeVar("M", bound=BaseModel)

#: anything larger is rejected before parsing (hostile-input guard)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class DecodeError(ValueError):
    """Bytes that are not a valid event; ``reason`` is safe to put on a DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(model: type[M], data: bytes | str) -> M:
    """Parse and validate ``data`` as ``model``; raise :class:`DecodeError`."""
    if data is None:
        raise DecodeError("empty message")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message too large: {len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errs = exc.errors(include_url=False, include_input=False)[:5]
        if errs and errs[0]["type"] == "json_invalid":
            raise DecodeError(f"invalid JSON: {errs[0]['msg']}") from None
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in errs)
        raise DecodeError(f"schema violation ({model.__name__}): {detail}") from None


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
