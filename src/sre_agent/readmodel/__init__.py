"""Read side of the agent (CQRS): projections of the output topics for the API.

The REST API, the web console, ChatOps and ``/metrics`` answer from a
:class:`ReadModel` folded from the loop's output topics, never from the
stages' internals. Everything here is pure: no Kafka, no clock.
"""

from __future__ import annotations

from .chatops import Command, CommandError, parse_command
from .latency import LatencyHistograms
from .query import QueryError, paginate
from .series import SeriesBuffers
from .store import TOPICS, ReadModel

__all__ = [
    "TOPICS",
    "Command",
    "CommandError",
    "LatencyHistograms",
    "QueryError",
    "ReadModel",
    "SeriesBuffers",
    "paginate",
    "parse_command",
]
