"""Pure stage logic: detect, correlate, rca, risk, plan, approve, verify.

Nothing here performs I/O or reads the clock; every stage is testable on
plain events without Kafka.
"""

from __future__ import annotations

from .detect import MetricDetector

__all__ = ["MetricDetector"]
