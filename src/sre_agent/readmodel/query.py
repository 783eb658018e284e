"""Query-string parsing with clear messages, and limit/offset pagination.

Examples
--------
>>> q = {"limit": "2", "hours": "1.5"}
>>> int_param(q, "limit", 50, 1, 1000), float_param(q, "hours", 24.0, 0.0, 720.0)
(2, 1.5)
>>> try:
...     int_param({"limit": "ten"}, "limit", 50, 1, 1000)
... except QueryError as exc:
...     print(exc)
limit must be an integer between 1 and 1000, got 'ten'
>>> paginate(list("abcde"), limit=2, offset=2)
{'items': ['c', 'd'], 'total': 5, 'limit': 2, 'offset': 2, 'next_offset': 4}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "QueryError",
    "choice_param",
    "float_param",
    "int_param",
    "page_params",
    "paginate",
    "str_param",
]

T = TypeVar("T")

MAX_LIMIT = 1000


class QueryError(ValueError):
    """A bad query parameter; the message is safe to return to the client."""


def int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        v = lo - 1
    if not lo <= v <= hi:
        raise QueryError(f"{name} must be an integer between {lo} and {hi}, got {raw!r}")
    return v


def float_param(
    q: Mapping[str, str], name: str, default: float | None, lo: float, hi: float
) -> float | None:
    """A number in ``(lo, hi]``; ``default`` when absent."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and lo < v <= hi):
        raise QueryError(
            f"{name} must be a number greater than {lo:g} and at most {hi:g}, got {raw!r}"
        )
    return v


def choice_param(
    q: Mapping[str, str], name: str, choices: Sequence[str], default: str | None = None
) -> str | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise QueryError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def str_param(q: Mapping[str, str], name: str, max_len: int = 512) -> str | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise QueryError(f"{name} is too long (at most {max_len} characters)")
    return raw


def page_params(q: Mapping[str, str], default_limit: int = 50) -> tuple[int, int]:
    """``(limit, offset)`` from the query string."""
    return (
        int_param(q, "limit", default_limit, 1, MAX_LIMIT),
        int_param(q, "offset", 0, 0, 10_000_000),
    )


def paginate(items: Sequence[T], limit: int, offset: int) -> dict[str, Any]:
    page = list(items[offset : offset + limit])
    nxt = offset + limit if offset + limit < len(items) else None
    return {
        "items": page,
        "total": len(items),
        "limit": limit,
        "offset": offset,
        "next_offset": nxt,
    }
