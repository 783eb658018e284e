"""Online models (River-style ``learn_one``/``score_one``).

- :class:`SeriesBank` — per-series seasonal baselines and four detectors, one
  float row per series, updated many series per vectorised step (the stream's
  hot path);
- :class:`SeasonalDetector` — the same model for one series with River's API;
- :class:`TrendForecaster` — River Holt (level + trend) on bucketed means, for
  time-to-breach early warnings;
- :class:`TemplateMiner` — Drain-style online log template mining.

Every model is deterministic with compact ``to_bytes`` state and pure scoring.
"""

from __future__ import annotations

from .bank import DETECTORS, BankOutput, SeriesBank, band_z
from .base import Score, SeriesModel
from .seasonal import SeasonalDetector

__all__ = ["DETECTORS", "BankOutput", "Score", "SeasonalDetector", "SeriesBank", "SeriesModel",
           "band_z"]
