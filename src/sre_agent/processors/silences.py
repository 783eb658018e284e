"""Silences and maintenance windows: which signals the correlator drops.

Two sources, one matching rule:

* static ones from ``correlation.silences`` (configuration, ids ``config:<n>``);
* run-time ones (:class:`~sre_agent.schemas.Silence`) created through the API,
  the console or ``/sre silence``, kept in the compacted ``silences`` topic and
  folded into a :class:`SilenceBook` on every worker.

A signal is silenced when **every** matcher of one silence matches and the
signal's event time is inside ``[starts_at, ends_at)``. A matcher is a shell
glob on a signal field (``service``, ``name``/``rule``, ``kind``, ``severity``,
``fingerprint``, ``namespace``) or on a label; a pattern starting with ``!``
matches when the glob does not. Pure: times come from the signals and callers.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from sre_agent.schemas import Silence
>>> t = datetime(2025, 11, 13, tzinfo=UTC)
>>> book = SilenceBook()
>>> book.update(Silence(silence_id="s1", matchers={"service": "checkout*", "severity": "!critical"},
...                     starts_at=t, ends_at=t + timedelta(hours=1), author="api:otto"))
>>> book.match({"service": "checkout-api", "severity": "warning"}, {}, t).silence_id
's1'
>>> book.match({"service": "checkout-api", "severity": "critical"}, {}, t) is None
True
>>> book.match({"service": "checkout-api", "severity": "warning"}, {}, t + timedelta(hours=2)) is None
True
"""

from __future__ import annotations

import fnmatch
from collections import Counter, OrderedDict
from collections.abc import Mapping
from datetime import datetime

from ..schemas import Silence

__all__ = ["SilenceBook", "matches"]

#: silences remembered (active or recently ended); the oldest ended ones go first
MAX_SILENCES = 10_000
#: (silence, fingerprint) pairs remembered to report a silence's first hit per signal once
MAX_FIRST_HITS = 20_000


def matches(matchers: Mapping[str, str], fields: Mapping[str, str],
            labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches the signal's fields or labels.

    >>> matches({"service": "api", "team": "pay*"}, {"service": "api"}, {"team": "payments"})
    True
    >>> matches({"namespace": "!kube-*"}, {}, {"namespace": "kube-system"})
    False
    """
    for key, pattern in matchers.items():
        value = fields.get(key)
        if value is None:
            value = labels.get(key, "")
        negate = pattern.startswith("!")
        hit = fnmatch.fnmatchcase(str(value), pattern[1:] if negate else pattern)
        if hit == negate:
            return False
    return True


class SilenceBook:
    """The run-time silences this worker knows, latest state per id."""

    def __init__(self, max_items: int = MAX_SILENCES) -> None:
        self.max_items = max_items
        self.silences: OrderedDict[str, Silence] = OrderedDict()
        #: signals dropped per silence id (this worker)
        self.hits: Counter[str] = Counter()
        self._first: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.silences)

    def get(self, silence_id: str) -> Silence | None:
        return self.silences.get(silence_id)

    def update(self, silence: Silence) -> None:
        """Fold the latest state of a silence in (an older event never wins)."""
        cur = self.silences.get(silence.silence_id)
        if cur is not None and silence.time < cur.time:
            return
        if cur is not None and cur.state == "expired" and silence.state == "active":
            return  # expiring is final: a late 'active' replay must not revive it
        self.silences[silence.silence_id] = silence
        self.silences.move_to_end(silence.silence_id)
        while len(self.silences) > self.max_items:
            oldest = next(iter(self.silences))
            self.silences.pop(oldest)

    def match(self, fields: Mapping[str, str], labels: Mapping[str, str],
              at: datetime) -> Silence | None:
        """The first silence that drops a signal of time ``at`` with these fields/labels."""
        for s in self.silences.values():
            if s.active_at(at) and matches(s.matchers, fields, labels):
                self.hits[s.silence_id] += 1
                return s
        return None

    def first_hit(self, silence_id: str, fingerprint: str) -> bool:
        """True the first time ``silence_id`` drops ``fingerprint`` (for one audit record)."""
        key = (silence_id, fingerprint)
        if key in self._first:
            return False
        self._first[key] = None
        while len(self._first) > MAX_FIRST_HITS:
            self._first.popitem(last=False)
        return True

    def listing(self, now: datetime, include_expired: bool = False) -> list[Silence]:
        """Silences newest first; ended ones only with ``include_expired``."""
        out = [s for s in self.silences.values()
               if include_expired or (s.state == "active" and s.ends_at > now)]
        out.sort(key=lambda s: s.starts_at, reverse=True)
        return out

    def ended(self, now: datetime) -> list[Silence]:
        """Silences still marked active whose window is over (to be marked expired)."""
        return [s for s in self.silences.values() if s.state == "active" and s.ends_at <= now]
