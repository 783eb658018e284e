"""Pure stage logic: detect, correlate, rca, risk, plan, approve, verify.

Nothing here performs I/O or reads the clock; every stage is testable on
plain events without Kafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .detect import MetricDetector

__all__ = ["MetricDetector"]


def __getattr__(name: str) -> Any:
    """``MetricDetector`` on first use: importing one stage (``processors.ingest`` for
    ``sre-agent publish``) must not import the detectors' River/SciPy stack, which
    takes seconds of CPU and made every one-shot CLI command slow to start."""
    if name == "MetricDetector":
        from .detect import MetricDetector

        return MetricDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
