"""Checks around an action: identity and pre-checks before, verification after.

The executor observes the live target (a plain dict from a sink: ``exists``,
``uid``, ``revision``, ``replicas`` ...) and asks these pure functions:

* :func:`identity_problem` — is it still the object the plan assumed? A pod that
  was replaced since (new uid) or a deployment rolled to another revision means
  the problem the plan was made for is gone: skip, never act on the new object.
* :func:`precheck_problems` — the playbook's pre-checks (``previous_revision``,
  ``replicas_at_most``, ``replicas_at_least``).
* :func:`verdict` — post-action verification: ``anomaly_cleared`` passes when no
  anomaly is open on the playbook's metric for the service, ``rollout_complete``
  when every replica is updated and available; ``fail`` once ``within`` passed.

Examples
--------
>>> from sre_agent.schemas import ActionStep, Target
>>> step = ActionStep(action="restart_pod", target=Target(kind="pod", name="api-1", uid="u1"))
>>> identity_problem(step, {"exists": True, "uid": "u2"})
'pod/default/api-1 is another object now (uid u2, plan assumed u1)'
>>> verdict({"check": "anomaly_cleared", "metric": "err", "within": 60},
...         elapsed=5, signal={"open_anomalies": {("api", "err")}}, service="api")
'wait'
>>> verdict({"check": "anomaly_cleared", "metric": "err", "within": 60},
...         elapsed=61, signal={"open_anomalies": {("api", "err")}}, service="api")
'fail'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..schemas import ActionStep

__all__ = ["identity_problem", "precheck_problems", "rollout_complete", "verdict"]

Verdict = Literal["pass", "fail", "wait"]


def identity_problem(step: ActionStep, observed: Mapping[str, Any]) -> str | None:
    """Why the live object is not the one the plan was made for, or None."""
    ref = step.target.ref()
    if not observed.get("exists", False):
        return f"{ref} no longer exists"
    uid = step.target.uid
    if uid and observed.get("uid") and observed["uid"] != uid:
        return f"{ref} is another object now (uid {observed['uid']}, plan assumed {uid})"
    for key, want in sorted(step.expect.items()):
        have = observed.get(key)
        if have is not None and str(have) != str(want):
            return f"{ref} changed since the plan: {key} is {have}, plan assumed {want}"
    return None


def precheck_problems(step: ActionStep, observed: Mapping[str, Any]) -> list[str]:
    """Failed pre-checks of ``step`` against the live object (empty: all passed)."""
    out = []
    replicas = observed.get("replicas")
    for check in step.prechecks:
        for name, arg in check.items():
            if name == "previous_revision":
                if arg and not observed.get("previous_revision"):
                    out.append("no previous revision to roll back to")
            elif name == "replicas_at_most":
                if replicas is not None and replicas > int(arg):
                    out.append(f"replicas {replicas} > {arg}")
            elif name == "replicas_at_least":
                if replicas is not None and replicas < int(arg):
                    out.append(f"replicas {replicas} < {arg}")
            else:
                out.append(f"unknown pre-check {name!r}")
    return out


def rollout_complete(observed: Mapping[str, Any]) -> bool:
    """All desired replicas updated and available (observed generation current)."""
    want = observed.get("replicas")
    if want is None:
        return False
    gen, seen = observed.get("generation"), observed.get("observed_generation")
    if gen is not None and seen is not None and seen < gen:
        return False
    return (observed.get("updated_replicas") or 0) >= want and \
        (observed.get("available_replicas") or 0) >= want


def verdict(spec: Mapping[str, Any] | None, elapsed: float, signal: Mapping[str, Any],
            service: str | None) -> Verdict:
    """Verification state ``elapsed`` seconds after acting.

    ``signal`` holds ``open_anomalies`` (a set of ``(service, metric)``) and/or
    ``observed`` (the live object) depending on the check.
    """
    if not spec:
        return "pass"
    check = spec.get("check", "anomaly_cleared")
    if check == "anomaly_cleared":
        ok = (service or "", spec.get("metric")) not in signal.get("open_anomalies", set())
    elif check == "rollout_complete":
        ok = rollout_complete(signal.get("observed") or {})
    else:
        ok = False
    if ok:
        return "pass"
    return "fail" if elapsed >= float(spec.get("within", 300)) else "wait"
