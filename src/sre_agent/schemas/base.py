"""Common base of every wire model: version, id, UTC timestamps, strictness."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["Event", "UtcDatetime", "new_id", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new random event id (32 hex chars)."""
    return uuid.uuid4().hex


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        # naive timestamps on the wire are taken as UTC
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # e.g. 9999-12-31T23:59-23:00: valid ISO, but not representable in UTC;
        # a ValueError makes it a validation error (-> DLQ), never a crash
        raise ValueError("timestamp out of range once converted to UTC") from None


#: a datetime normalised to UTC (naive input is read as UTC)
UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]


class Event(BaseModel):
    """Base of every topic's schema.

    Subclasses set ``TOPIC`` (the un-prefixed topic name) and may bump
    ``schema_version``; within a version changes are additive only.
    Unknown fields are ignored (forward compatible with newer producers);
    NaN and infinities are rejected everywhere.
    """

    model_config = ConfigDict(
        extra="ignore",
        allow_inf_nan=False,
        str_max_length=65536,
        populate_by_name=True,
    )

    TOPIC: ClassVar[str] = ""

    schema_version: int = 1
    event_id: str = Field(default_factory=new_id, min_length=1, max_length=128)
    time: UtcDatetime = Field(default_factory=utcnow, description="when the event happened (UTC)")

    def key(self) -> str | None:
        """Kafka key for this event (the architecture's per-topic key)."""
        return None
