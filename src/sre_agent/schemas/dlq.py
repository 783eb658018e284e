"""Dead letters: input that a stage could not decode or validate."""

from __future__ import annotations

import base64

from pydantic import Field

from .base import Event

__all__ = ["DeadLetter"]


class DeadLetter(Event):
    """Carried on ``<topic>.dlq``: the original bytes (base64) and the reason."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    message_key: str | None = None
    error: str
    stage: str = ""
    original_b64: str = Field(default="", description="original message value, base64")

    @classmethod
    def of(cls, topic: str, value: bytes | None, error: str, **kw: object) -> DeadLetter:
        return cls(topic=topic, error=error,
                   original_b64=base64.b64encode(value or b"").decode(), **kw)  # type: ignore[arg-type]

    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)
