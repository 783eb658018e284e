"""Dead letters: input that a stage could not decode or validate.

A dead letter must never fail to be made: whatever the input (any size, any
bytes, any key), :meth:`DeadLetter.of` builds a valid, producible event. Large
originals are kept in part (:data:`MAX_ORIGINAL_BYTES`) with their full size and
SHA-256; the whole message stays on its source topic at ``partition``/``offset``.

>>> dl = DeadLetter.of("metrics", b"x" * 300_000, "invalid JSON", partition=1, offset=9)
>>> dl.truncated, dl.original_size, len(dl.original()) == MAX_ORIGINAL_BYTES
(True, 300000, True)
"""

from __future__ import annotations

import base64
import hashlib

from pydantic import Field

from .base import Event

__all__ = ["MAX_ORIGINAL_BYTES", "DeadLetter"]

#: bytes of the original kept inline (base64 fits well within Kafka's 1 MiB default)
MAX_ORIGINAL_BYTES = 256 * 1024
_MAX_ERROR = 4000
_MAX_KEY = 1024


class DeadLetter(Event):
    """Carried on ``<topic>.dlq``: the original bytes (base64) and the reason."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    message_key: str | None = None
    error: str
    stage: str = ""
    original_b64: str = Field(default="", max_length=4 * MAX_ORIGINAL_BYTES // 3 + 4,
                              description="original message value (or its head), base64")
    original_size: int = Field(default=0, description="size of the whole original value")
    original_sha256: str = ""
    truncated: bool = Field(default=False, description="original_b64 holds only the head")

    @classmethod
    def of(cls, topic: str, value: bytes | str | None, error: str, **kw: object) -> DeadLetter:
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else (value or b"")
        head = raw[:MAX_ORIGINAL_BYTES]
        key = kw.get("message_key")
        if isinstance(key, str) and len(key) > _MAX_KEY:
            kw["message_key"] = key[:_MAX_KEY]
        if isinstance(kw.get("stage"), str):
            kw["stage"] = str(kw["stage"])[:256]
        return cls(topic=topic[:512], error=error[:_MAX_ERROR],
                   original_b64=base64.b64encode(head).decode(), original_size=len(raw),
                   original_sha256=hashlib.sha256(raw).hexdigest(),
                   truncated=len(head) < len(raw), **kw)  # type: ignore[arg-type]

    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)
