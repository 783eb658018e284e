"""What a piece of feedback teaches the knowledge base (pure).

``feedback`` events come from the API, Slack and the verifier. Combined with
the RCA that was shown for the incident, each one resolves to a
:class:`Lesson`: which cause (from the RCA vocabulary) on which service was
confirmed or rejected, and whether the remediation worked.

Examples
--------
>>> from sre_agent.schemas import Feedback
>>> top = {"cause_type": "bad_deploy", "service": "api"}
>>> learn(Feedback(incident_id="i", kind="rca", rating="good"), top)
Lesson(cause_type='bad_deploy', service='api', confirmed=True, action_succeeded=None, note='rca rated good')
>>> learn(Feedback(incident_id="i", kind="cause", confirmed_cause="DB connection pool exhausted",
...                confirmed_service="db"), top).cause_type
'db_pool_exhaustion'
>>> learn(Feedback(incident_id="i", kind="action", action_outcome="failed"), top).action_succeeded
False

A *verified* outcome of an executed action is feedback too (the verifier's):

>>> from sre_agent.schemas import ActionResult
>>> r = ActionResult(action_id="a1", plan_id="p1", incident_id="i", status="rolled_back",
...                  verified=False, dry_run=False, action="rollout_restart", target="api")
>>> fb = outcome_feedback(r)
>>> fb.kind, fb.action_outcome, fb.user
('action', 'failed', 'verifier')
>>> outcome_feedback(r.model_copy(update={"status": "dry_run", "dry_run": True})) is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..schemas import ActionResult, Feedback
from .rca import CAUSE_TYPES
from .rca_features import text_category

__all__ = ["Lesson", "learn", "normalise_cause", "outcome_feedback"]

_BY_CATEGORY = {"db_pool": "db_pool_exhaustion", "oom": "memory_leak", "disk": "disk_saturation",
                "crash": "crash_loop", "dependency": "dependency_failure", "config": "config_change"}
_KEYWORDS = [
    (r"deploy|release|rollout|revision|image|version", "bad_deploy"),
    (r"memory|leak|heap", "memory_leak"),
    (r"traffic|surge|load spike|bot", "traffic_surge"),
    (r"cpu|throttl|saturat", "resource_saturation"),
    (r"node|evict|schedul", "node_pressure"),
    (r"slow|latency", "slow_dependency"),
]


def normalise_cause(text: str | None) -> str | None:
    """Map a cause (vocabulary word or free text) onto the RCA vocabulary."""
    if not text or not text.strip():
        return None
    word = re.sub(r"[\s\-]+", "_", text.strip().lower())
    if word in CAUSE_TYPES:
        return word
    cat = text_category(text)
    if cat in _BY_CATEGORY:
        return _BY_CATEGORY[cat]
    for rx, cause in _KEYWORDS:
        if re.search(rx, text, re.I):
            return cause
    return "unknown"


@dataclass(frozen=True, slots=True)
class Lesson:
    cause_type: str | None
    service: str | None
    #: True: the cause is confirmed; False: the shown cause was wrong; None: no verdict
    confirmed: bool | None
    action_succeeded: bool | None
    note: str


def learn(fb: Feedback, top: dict[str, Any] | None) -> Lesson:
    """Resolve ``fb`` against the top hypothesis that was shown (may be None)."""
    top = top or {}
    explicit = normalise_cause(fb.confirmed_cause)
    action = None if fb.action_outcome is None else fb.action_outcome == "succeeded"
    if explicit:
        return Lesson(explicit, fb.confirmed_service or top.get("service"), True, action,
                      f"cause confirmed by {fb.user}: {fb.confirmed_cause}")
    if fb.rating == "good":
        return Lesson(top.get("cause_type"), fb.confirmed_service or top.get("service"), True,
                      action, "rca rated good")
    if fb.rating == "bad":
        return Lesson(top.get("cause_type"), top.get("service"), False, action, "rca rated bad")
    if action is not None:
        return Lesson(top.get("cause_type"), top.get("service"), None, action,
                      f"action {fb.action_outcome}")
    return Lesson(None, None, None, None, "no verdict")


#: who speaks for verified action outcomes in ``feedback``
VERIFIER = "verifier"


def outcome_feedback(result: ActionResult) -> Feedback | None:
    """The feedback a verified outcome of an executed action gives, or None.

    * ``succeeded`` and verified (the symptoms cleared) -> the remediation worked;
    * ``rolled_back`` (verification failed, the change was undone), or ``failed``
      after a verification -> it did not;
    * dry runs, refusals (``blocked``, ``rate_limited``, ``skipped``), unverified
      successes and failures to execute at all say nothing about the diagnosis.
    """
    if result.dry_run or result.verified is None:
        return None
    if result.status == "succeeded" and result.verified:
        outcome = "succeeded"
    elif result.status == "rolled_back" or (result.status == "failed" and not result.verified):
        outcome = "failed"
    else:
        return None
    step = f"{result.action or 'action'} on {result.target or '?'}"
    return Feedback(event_id=f"outcome-{result.action_id}"[:128],
                    incident_id=result.incident_id, kind="action",
                    action_outcome=outcome,  # type: ignore[arg-type]
                    user=VERIFIER, time=result.time,
                    comment=f"verified outcome of {step} (plan {result.plan_id}, step "
                            f"{result.step_index}): {result.status}; {result.detail[:300]}")
