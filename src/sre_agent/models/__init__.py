"""Online models (River-style ``learn_one``/``score_one``).

- :class:`TailBank` — the stream's detector: per-series robust level + daily
  profile and a calibrated tail surprisal, one float row per series, updated
  many series per vectorised step (the hot path);
- :class:`CalibratedTail` — its River reference implementation
  (``river.base.AnomalyDetector``), and :class:`Calibrated`, which puts any
  River detector's score on the same calibrated scale;
- :class:`SeriesBank` / :class:`SeasonalDetector` — the previous Gaussian
  four-detector bank (kept for offline RCA until it moves off it);
- :class:`TrendForecaster` — River Holt (level + trend) on bucketed means, for
  time-to-breach early warnings;
- :class:`TemplateMiner` — Drain-style online log template mining.

Every model is deterministic with compact ``to_bytes`` state and pure scoring.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bank import DETECTORS, BankOutput, SeriesBank, band_z
    from .base import Score, SeriesModel
    from .river_detectors import Calibrated, CalibratedTail, make_detector
    from .seasonal import SeasonalDetector
    from .tailbank import TailBank, TailOutput

__all__ = ["DETECTORS", "BankOutput", "Calibrated", "CalibratedTail", "Score", "SeasonalDetector",
           "SeriesBank", "SeriesModel", "TailBank", "TailOutput", "band_z", "make_detector"]

#: name -> submodule. Imported on first use: a module that needs one light model
#: (the log template miner) must not pull in River and SciPy (seconds of CPU that made
#: every one-shot CLI command, even ``sre-agent audit verify``, slow to start).
_WHERE = {"DETECTORS": "bank", "BankOutput": "bank", "SeriesBank": "bank", "band_z": "bank",
          "Score": "base", "SeriesModel": "base", "Calibrated": "river_detectors",
          "CalibratedTail": "river_detectors", "make_detector": "river_detectors",
          "SeasonalDetector": "seasonal", "TailBank": "tailbank", "TailOutput": "tailbank"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
