"""Errors of the local infrastructure."""

from __future__ import annotations


class DevstackError(RuntimeError):
    """A local service could not be fetched or started; the message says why."""
