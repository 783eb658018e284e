"""Online per-series models (River-style ``learn_one``/``score_one``).

Every model here satisfies :class:`~sre_agent.models.base.SeriesModel`:
deterministic, compact ``to_bytes`` state, pure scoring.
"""

from __future__ import annotations

from .base import Score, SeriesModel
from .baseline import SeasonalBaseline

__all__ = ["Score", "SeasonalBaseline", "SeriesModel"]
