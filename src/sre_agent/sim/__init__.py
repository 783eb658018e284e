"""A simulated trading platform with labelled faults, closed over ``sre-actions``.

The family: :mod:`.topology` (services, dependencies, nodes), :mod:`.traffic`
(seasonality, bursts, noise), :mod:`.physics` (load -> latency, errors,
saturation), :mod:`.series` / :mod:`.logtext` / :mod:`.alerts` (what the
platform emits, as the project's wire schemas), :mod:`.faults` and
:mod:`.fault_kinds` (what goes wrong and which action fixes it),
:mod:`.engine` (the deterministic step loop), :mod:`.scenarios` and
:mod:`.truth` (the labelled library), :mod:`.timeline`, :mod:`.scorecard`
(pure scoring against the seeds' targets), :mod:`.report` (printing) and
:mod:`.replay` (the only I/O: Kafka and the worker's ``/status``).
"""

from __future__ import annotations

from .engine import DEFAULT_EPOCH, Platform, Tick
from .faults import ACTION_DELAY, Effect, Fault, Outcome
from .scenarios import SCENARIOS, Scenario
from .scorecard import TARGETS, Observation, RunRecord, score
from .timeline import Segment, clean_intervals, plan
from .topology import Component, Topology
from .truth import ACTIONS, CAUSE_TYPES, GroundTruth

__all__ = [
    "ACTIONS",
    "ACTION_DELAY",
    "CAUSE_TYPES",
    "DEFAULT_EPOCH",
    "SCENARIOS",
    "TARGETS",
    "Component",
    "Effect",
    "Fault",
    "GroundTruth",
    "Observation",
    "Outcome",
    "Platform",
    "RunRecord",
    "Scenario",
    "Segment",
    "Tick",
    "Topology",
    "clean_intervals",
    "plan",
    "score",
]
