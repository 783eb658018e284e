"""Circuit breakers for the agent's outbound dependencies (Anthropic, Slack).

A dependency that keeps failing costs every caller its full timeout (and its
retries); after ``failures`` consecutive failures the breaker opens and calls
fail at once with :class:`CircuitBreakerError` for ``reset_seconds``, so RCA
falls back to the rules immediately and a plan waits for API votes without
holding the approval stage. The first call after that is a trial (half-open):
success closes the breaker, failure opens it again. Built on the
``circuitbreaker`` package; :func:`breaker_health` is what ``/status`` shows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from circuitbreaker import CircuitBreaker, CircuitBreakerError

__all__ = ["CircuitBreakerError", "Guard", "breaker_health"]

T = TypeVar("T")


class Guard:
    """One breaker around the async calls to one dependency."""

    def __init__(self, name: str, failures: int, reset_seconds: float) -> None:
        self.breaker = CircuitBreaker(failure_threshold=failures,
                                      recovery_timeout=reset_seconds, name=name)
        self._call = self.breaker.decorate(self._invoke)

    @staticmethod
    async def _invoke(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    async def __call__(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` unless the breaker is open (then it raises
        :class:`CircuitBreakerError` without calling)."""
        return await self._call(fn, *args, **kwargs)  # type: ignore[no-any-return]


def breaker_health(guard: Guard) -> dict[str, Any]:
    b = guard.breaker
    state = b.state
    return {"ok": state != "open", "circuit": state, "consecutive_failures": b.failure_count,
            "open_seconds_left": max(0, b.open_remaining) if state == "open" else 0,
            "last_failure": str(b.last_failure)[:300] if b.last_failure else None}
