"""Which notification sinks an incident goes to: Robusta-style scopes.

A sink's ``scope`` has ``include`` and ``exclude`` lists of selectors. An
incident is routed to the sink when it matches at least one ``include``
selector (or the list is empty) and no ``exclude`` selector. Within a selector
every field given must match; a field holding a list matches when any value
does. Service, namespace, title and label values are shell globs.

Examples
--------
>>> from sre_agent.config import SinkScope
>>> scope = SinkScope.model_validate({"include": [{"severity": "critical"},
...                                               {"namespace": "payments", "labels": {"team": "pay*"}}],
...                                   "exclude": [{"service": "canary-*"}]})
>>> facts = Facts(severity="warning", services=("wallet",), namespace="payments",
...               title="wallet: latency up", labels={"team": "payments"})
>>> in_scope(scope, facts)
True
>>> in_scope(scope, facts._replace(labels={"team": "search"}))
False
>>> in_scope(scope, facts._replace(severity="critical", services=("canary-wallet",)))
False
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import NamedTuple

from ..config import ScopeSelector, SinkScope

__all__ = ["Facts", "in_scope", "selector_matches"]


class Facts(NamedTuple):
    """What routing looks at, taken from the incident."""

    severity: str
    services: tuple[str, ...]
    namespace: str
    title: str
    labels: Mapping[str, str]


def _glob(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def selector_matches(sel: ScopeSelector, f: Facts) -> bool:
    if sel.severity is not None and f.severity not in sel.severity:
        return False
    if sel.service is not None and not any(_glob(s, sel.service) for s in f.services):
        return False
    if sel.namespace is not None and not _glob(f.namespace, sel.namespace):
        return False
    if sel.title is not None and not _glob(f.title, sel.title):
        return False
    if sel.labels is not None:
        for key, pattern in sel.labels.items():
            if key not in f.labels or not fnmatch.fnmatchcase(f.labels[key], pattern):
                return False
    return True


def in_scope(scope: SinkScope, f: Facts) -> bool:
    """Whether an incident with these facts is routed to a sink with ``scope``."""
    if scope.include and not any(selector_matches(s, f) for s in scope.include):
        return False
    return not any(selector_matches(s, f) for s in scope.exclude)
