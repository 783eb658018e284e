"""Policy: which tier a risk score falls in, and who must agree before acting.

=========  ===========  ==================  ==========================================
tier       score        policy              meaning
=========  ===========  ==================  ==========================================
LOW        < 0.4        AUTO                executed at once, humans notified after
MEDIUM     0.4 - 0.6    ONE_APPROVAL        one on-call approval
HIGH       0.6 - 0.8    TWO_SRE_ONE_LEAD    two SREs plus one tech lead
CRITICAL   >= 0.8       BLOCKED             diagnosis only, never executed
=========  ===========  ==================  ==========================================

Two rules override the score: a step whose target (name or service) matches a
``protected`` glob (wallets, balances, orders, matching engine, production
databases) is BLOCKED whatever the score — the seeds' iron rule — and with
auto-remediation off (the default) a LOW plan still waits for one approval.

Examples
--------
>>> from sre_agent.config import ActionSettings
>>> from sre_agent.schemas import ActionStep, Target
>>> p = PolicyEngine(ActionSettings())
>>> step = ActionStep(action="restart_pod", target=Target(kind="pod", name="api-7f9c"))
>>> d = p.decide(0.2, [step])
>>> d.tier, d.policy, d.reason
('LOW', 'ONE_APPROVAL', 'auto-remediation is disabled')
>>> wallet = ActionStep(action="restart_pod", target=Target(kind="pod", name="wallet-0"))
>>> p.decide(0.1, [wallet]).policy
'BLOCKED'
>>> tier_of(0.6), tier_of(0.8)
('HIGH', 'CRITICAL')
>>> recent_actions([100.0, 3000.0, 3650.0], now=3700.0)  # the first is over an hour old
[3000.0, 3650.0]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import ActionSettings
from ..schemas import ActionStep, Target
from .risk import SPAN

__all__ = ["SPAN_FLOOR", "STRICTNESS", "PolicyDecision", "PolicyEngine", "is_protected",
           "recent_actions", "tier_of"]

POLICY_OF_TIER = {"LOW": "AUTO", "MEDIUM": "ONE_APPROVAL", "HIGH": "TWO_SRE_ONE_LEAD",
                  "CRITICAL": "BLOCKED"}
#: policies from loosest to strictest
STRICTNESS = {"AUTO": 0, "ONE_APPROVAL": 1, "TWO_SRE_ONE_LEAD": 2, "BLOCKED": 3}
#: a plan's score is never more than this below its riskiest step's own risk
#: (the context moves the score by at most ``risk.SPAN / 2``)
SPAN_FLOOR = SPAN / 2


def tier_of(score: float) -> str:
    """LOW < 0.4 <= MEDIUM < 0.6 <= HIGH < 0.8 <= CRITICAL."""
    if score < 0.4:
        return "LOW"
    if score < 0.6:
        return "MEDIUM"
    if score < 0.8:
        return "HIGH"
    return "CRITICAL"


def is_protected(target: Target, patterns: Iterable[str]) -> str | None:
    """The protected glob matching the target's name or service, or None."""
    names = [target.name.lower()]
    if target.service:
        names.append(target.service.lower())
    for pattern in patterns:
        p = pattern.lower()
        if any(fnmatch.fnmatchcase(n, p) for n in names):
            return pattern
    return None


@dataclass(frozen=True)
class PolicyDecision:
    tier: str
    policy: str
    protected: bool
    reason: str

    @property
    def status(self) -> str:
        """The plan's initial status under this decision."""
        return {"BLOCKED": "blocked", "AUTO": "auto"}.get(self.policy, "pending")


class PolicyEngine:
    def __init__(self, settings: ActionSettings) -> None:
        self.protected = list(settings.protected)
        self.auto_remediation = settings.auto_remediation

    def protected_match(self, steps: Iterable[ActionStep], service: str | None = None) -> str | None:
        """Why these steps are protected (``"pattern on target"``), or None."""
        for step in steps:
            hit = is_protected(step.target, self.protected)
            if hit:
                return f"{step.target.ref()} matches protected {hit!r}"
        if service:
            hit = is_protected(Target(kind="service", name="x", service=service), self.protected)
            if hit:
                return f"service {service} matches protected {hit!r}"
        return None

    def decide(self, score: float, steps: Iterable[ActionStep], service: str | None = None) -> PolicyDecision:
        steps = list(steps)
        tier = tier_of(score)
        prot = self.protected_match(steps, service)
        if prot:
            return PolicyDecision(tier, "BLOCKED", True, f"protected: {prot}; diagnosis only")
        if not steps:
            return PolicyDecision(tier, "BLOCKED", False, "no executable step; diagnosis only")
        policy = POLICY_OF_TIER[tier]
        if policy == "BLOCKED":
            return PolicyDecision(tier, policy, False, f"risk {score:.2f} is CRITICAL; diagnosis only")
        if policy == "AUTO" and not self.auto_remediation:
            return PolicyDecision(tier, "ONE_APPROVAL", False, "auto-remediation is disabled")
        return PolicyDecision(tier, policy, False, f"risk {score:.2f} is {tier}")


def recent_actions(times: Iterable[float], now: float, window: float = 3600.0) -> list[float]:
    """Action times (epoch seconds) on one resource within the rate-limit window.

    The executor refuses a new action when ``len(recent_actions(...)) >=
    max_actions_per_resource_per_hour``.
    """
    return sorted(t for t in times if now - window < t <= now)
