"""Incident correlation: signals of one topology group -> incident lifecycle events.

Pure state machine ``(GroupState, Signal, now) -> (GroupState, [Incident])``.
The stream layer keys every signal by :meth:`ServiceGraph.group_of` its service
and keeps one :class:`GroupState` per group in a table, so all signals that may
form one incident are seen in order by one agent. ``now`` is processing time
(the caller's clock); windows over signals use the signals' event time.

Rules, each a test in ``tests/unit/test_correlate*.py``:

* identity comes from fingerprints: a signal whose fingerprint is already in an
  active incident is a duplicate (counted, nothing emitted), or a flap when it refires
  within ``window`` after it recovered; one that recovered longer ago fires anew and
  is routed like a new signal (the incident keeps the old occurrence as history);
* a firing signal joins the active incident that still has a *live* signal on a
  service within ``max_hops`` of its service and whose last signal is within
  ``window`` — through another service only while that live signal is also fresh
  (started or repeated within ``window``: a fault spreads in minutes) —, callers of a
  common dependency counting as neighbours then; otherwise it opens a new incident. An incident follows the platform:
  the services whose symptoms recovered no longer pull new signals in, and an
  incident whose signals all recovered takes nothing new — a new fault after a
  recovery opens its own incident (and gets its own RCA and plan);
* a signal is live while it fires: until its "resolved" (anomalies, alerts), for a
  ``window`` after its last occurrence (k8s events, which never resolve), for
  ``prediction_stale`` after its last repeat (early warnings, repeated while the
  breach is still expected);
* minimum evidence (``open_min_metrics``, 1 turns it off): critical alerts, critical
  anomalies of a symptom (latency, errors, availability) or of a metric of unknown kind,
  warning alerts on a symptom or on a metric of unknown kind, log anomalies, Kubernetes
  warnings and predictions open an incident at once; other anomalies (warning ones,
  critical ones of a cause such as CPU, and any moving the harmless way), and warning
  alerts on a cause (CPU, memory, disk ...: page on symptoms, not on causes), are held
  until their service shows that many distinct metrics moving the bad way for their
  kind, one of them a symptom users feel (latency, errors, availability), none a
  platform-wide movement (the same metric and direction on ``common_mode_services``
  services of the group within the window) — or, for a service changed within
  ``change_lookback`` (a change still in effect), one such metric of any kind. Complete
  evidence is judged ``settle`` seconds later, once the rest of that moment's signals
  are in, and opens nothing in a platform-wide load rise.
  A held signal that recovers first opens nothing; held signals near an incident that
  opens join it (they came first);
* resolved signals never open anything; when no signal of an incident is live
  it resolves after ``resolve_holddown`` of quiet (a refire in the
  hold-down is a flap: suppressed, nothing emitted);
* a recurrence of a resolved incident's fingerprint within ``reopen_window``
  reopens it (same id, ``reopen_count`` + 1); later ones open a new incident;
* silences/maintenance windows drop matching firing signals (configured ones and
  run-time ones from a :class:`~.silences.SilenceBook`);
* severity comes from impact (:mod:`.severity`), not from the loudest signal;
* a person resolving an incident (a ``resolve`` signal naming it) resolves it now;
* ``min_occurrences`` holds a rule's signals until N of them arrived in the window;
* deploys/config changes of the incident's services (and graph neighbours)
  within ``change_lookback`` before the service's first symptom in the incident
  (a neighbour's, for a service without symptoms; or ``change_after`` after: a sync
  reported late) are linked as ``candidate_changes`` — only those in effect: a
  deploy already replaced by a later deploy or rollback of the same service (a
  config change by a later config change) before the incident opened is not
  running any more and cannot be its cause; nor can a change made while the
  incident was already under way (such as its own remediation), nor a rollback
  to the revision that ran before the change it reverts (it puts back code that
  already ran: the fix of an earlier incident, not the cause of a later one).

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.config import CorrelationSettings
>>> c = IncidentCorrelator(CorrelationSettings(edges=[("api", "db")]))
>>> st = GroupState()
>>> t = lambda s: datetime.fromtimestamp(1.8e9 + s, UTC)
>>> sig = lambda fp, svc, s: Signal(kind="alert", fingerprint=fp, service=svc, rule="X", time=t(s))
>>> [i.status for i in c.update(st, sig("a1", "db", 0), now=1.8e9)]
['open']
>>> c.update(st, sig("a1", "db", 2), now=1.8e9 + 2)  # same fingerprint 2 s later: duplicate
[]
>>> [(i.status, i.services) for i in c.update(st, sig("a2", "api", 5), now=1.8e9 + 5)]
[('updated', ['api', 'db'])]
>>> c.stats.incidents_opened, c.stats.signals_in, c.stats.duplicates
(1, 3, 1)
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config import CorrelationSettings
from ..schemas import Incident
from .correlate_signals import Signal
from .correlate_state import PREDICTION_HORIZON, GroupState, IncidentState, SignalState
from .rca_features import is_bad, metric_category
from .severity import SeverityModel
from .silences import SilenceBook, matches
from .topology import ServiceGraph

__all__ = ["CorrelationStats", "GroupState", "IncidentCorrelator", "Signal"]

#: signal kinds that never send a "resolved" (they happen, they do not last)
POINT_KINDS = frozenset({"k8s", "deploy"})

log = logging.getLogger(__name__)

_SEV_RANK = {"info": 0, "warning": 1, "critical": 2}
#: an active incident emits non-material changes (a new series of a known service)
#: at most this often; the timer flushes what is left
MIN_UPDATE_INTERVAL = 30.0
MAX_CHANGES_PER_SERVICE = 20
MAX_PENDING = 500
#: metric categories (:func:`.rca_features.metric_category`) users feel: warning
#: anomalies open an incident only when one of them is among the corroborating metrics
SYMPTOMS = frozenset({"latency", "errors", "availability"})
#: metric categories that follow demand: the same one up on many services at once is the
#: platform's load rising (:meth:`IncidentCorrelator._load_rise`)
LOAD = frozenset({"traffic", "cpu"})


@dataclass
class CorrelationStats:
    """Counters of this worker's correlator (noise reduction = 1 - incidents / signals)."""

    signals_in: int = 0
    incidents_opened: int = 0
    reopened: int = 0
    joined: int = 0
    duplicates: int = 0
    flaps_suppressed: int = 0
    silenced: int = 0
    below_threshold: int = 0
    resolved_ignored: int = 0
    resolved_incidents: int = 0
    changes: int = 0
    #: weak signals held for corroboration / of them, recovered before any came
    held: int = 0
    unconfirmed: int = 0

    @property
    def noise_reduction(self) -> float:
        """Share of raw signals that did not become an incident of their own."""
        if not self.signals_in:
            return 0.0
        return 1.0 - self.incidents_opened / self.signals_in

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["noise_reduction"] = round(self.noise_reduction, 4)
        return d


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


#: change types that replace the running code (a rollback also restores the config)
_CODE = frozenset({"deploy", "rollback"})


def _restores(ch: dict[str, Any], changes: list[dict[str, Any]]) -> bool:
    """Is ``ch`` a rollback to the revision that ran before an earlier change it reverts?

    Such a rollback puts back code that already ran (the change it reverts is the
    suspect, and that is no longer in effect): it is the fix, not a cause. A rollback to
    a revision the log never saw running stays a suspect.

    >>> d = lambda ts, kind, rev, prev: {"ts": ts, "change_type": kind, "revision": rev,
    ...                                  "previous_revision": prev}
    >>> log = [d(0, "deploy", "v2", "v1"), d(10, "rollback", "v1", "v2")]
    >>> _restores(log[1], log), _restores(d(20, "rollback", "v0", "v1"), log)
    (True, False)
    """
    rev = ch.get("revision")
    if ch.get("change_type") != "rollback" or not rev:
        return False
    return any(c["ts"] < ch["ts"] and c.get("previous_revision") == rev for c in changes)


def _superseded(ch: dict[str, Any], changes: list[dict[str, Any]], before: float) -> bool:
    """Was change ``ch`` of a service replaced by a later change of it before ``before``?

    A deploy is replaced by a later deploy or rollback; a config change by a later config
    change or rollback; a scale change replaces nothing and is never replaced.

    >>> d = lambda ts, kind: {"ts": ts, "change_type": kind}
    >>> log = [d(0, "deploy"), d(10, "config"), d(20, "rollback")]
    >>> [_superseded(c, log, 30) for c in log], [_superseded(c, log, 15) for c in log]
    ([True, True, False], [False, False, False])
    """
    kind = ch.get("change_type") or "deploy"
    if kind not in _CODE and kind != "config":
        return False
    for c in changes:
        if not ch["ts"] < c["ts"] <= before:
            continue
        later = c.get("change_type") or "deploy"
        if later == "rollback" or (later in _CODE and kind in _CODE) or later == kind:
            return True
    return False


class IncidentCorrelator:
    """Groups signals into incidents along the dependency graph (see module doc)."""

    def __init__(self, settings: CorrelationSettings, graph: ServiceGraph | None = None,
                 severity: SeverityModel | None = None,
                 silences: SilenceBook | None = None) -> None:
        self.settings = settings
        self.graph = graph or ServiceGraph(settings.edges)
        self.stats = CorrelationStats()
        self.severity = severity or SeverityModel()
        #: run-time silences (fed by the stream layer); configured ones are in settings
        self.silences = silences
        #: (silence id, fingerprint, service) of signals a silence dropped for the first
        #: time; the stream layer drains it into audit records
        self.silenced_first: list[tuple[str, str, str]] = []

    # ------------------------------------------------------------------ routing
    def group_of(self, service: str) -> str:
        return self.graph.group_of(service)

    # ------------------------------------------------------------------ helpers
    def _silenced(self, sig: Signal) -> bool:
        fields = {"service": sig.service, "name": sig.rule, "rule": sig.rule, "kind": sig.kind,
                  "severity": sig.severity, "fingerprint": sig.fingerprint}
        for s in self.settings.silences:
            if s.starts_at and sig.time < s.starts_at:
                continue
            if s.ends_at and sig.time >= s.ends_at:
                continue
            if matches(s.matchers, fields, sig.labels):
                return True
        found = self.silences.match(fields, sig.labels, sig.time) if self.silences else None
        if found is not None and self.silences is not None \
                and self.silences.first_hit(found.silence_id, sig.fingerprint):
            self.silenced_first.append((found.silence_id, sig.fingerprint, sig.service))
            del self.silenced_first[:-1000]
        return found is not None

    def _min_occurrences(self, sig: Signal) -> int:
        n = 1
        for pattern, count in self.settings.min_occurrences.items():
            if fnmatch.fnmatchcase(sig.rule, pattern) or fnmatch.fnmatchcase(
                    f"{sig.kind}:{sig.rule}", pattern):
                n = max(n, count)
        return n

    def _expiry(self, x: SignalState) -> float:
        """Until when a firing signal counts as live without news (inf: until resolved)."""
        if x.kind in POINT_KINDS:
            return x.last + self.settings.window
        if x.kind == "prediction":
            return x.last + self.settings.prediction_stale
        return math.inf

    def _live(self, x: SignalState, now: float) -> bool:
        return x.active and now < self._expiry(x)

    def _fresh(self, x: SignalState, ts: float) -> bool:
        """Did ``x`` start or repeat within ``window`` before ``ts`` (a prediction: until
        its breach time)? A fault spreads to its neighbours within minutes; a symptom
        that has only lasted since then is no evidence that a neighbour's new trouble
        belongs to it."""
        last = x.last
        if x.kind == "prediction":
            last += min(float(x.attrs.get("seconds_to_breach", 0.0) or 0.0), PREDICTION_HORIZON)
        return ts - last <= self.settings.window

    def _near(self, inc: IncidentState, service: str, now: float) -> int | None:
        """Graph distance from ``service`` to the incident's services that still have a
        live signal (recovered parts of an incident pull nothing new in). Another
        service is pulled in only by a live signal that is also fresh (:meth:`_fresh`):
        an earlier fault's symptoms still firing an hour later do not absorb a new fault
        of a neighbour, which opens its own incident (with its own RCA and plan). Two
        services that call a common dependency count as ``max_hops`` apart (their fresh
        symptoms together point at it)."""
        best: int | None = None
        live = {x.service for x in inc.signals.values()
                if self._live(x, now) and (x.service == service or self._fresh(x, now))}
        recovered = {x.service for x in inc.signals.values()} \
            - {x.service for x in inc.signals.values() if self._live(x, now)}
        for s in live:
            d = 0 if s == service else self.graph.distance(s, service, limit=self.settings.max_hops)
            if (d is None or d > self.settings.max_hops) and s != service \
                    and self.settings.max_hops >= 1 \
                    and set(self.graph.callees(s)) & set(self.graph.callees(service)) - recovered:
                # callers of one dependency in trouble together: the shared dependency is
                # one explanation of both (it may have no signal of its own yet: a target
                # that is down exports nothing) — unless it recovered in this incident
                d = self.settings.max_hops
            if d is not None and d <= self.settings.max_hops and (best is None or d < best):
                best = d
        return best

    def _root(self, inc: IncidentState) -> str:
        firing = {}
        for s in inc.signals.values():
            if s.kind != "deploy":
                firing[s.service] = min(firing.get(s.service, s.first), s.first)
        if not firing:
            return inc.services[0]
        # most downstream: no callee of it has signals; then the earliest
        leaves = [s for s in firing if not any(c in firing for c in self.graph.downstream(s))]
        return min(leaves or list(firing), key=lambda s: (firing[s], s))

    def _link_changes(self, state: GroupState, inc: IncidentState) -> bool:
        """Attach recent changes in effect of the incident's services and neighbours;
        True if any new."""
        wanted = set(inc.services)
        for s in inc.services:
            wanted |= self.graph.neighbours(s)
        known = {c["event_id"] for c in inc.changes}
        added = False
        first: dict[str, float] = {}  # each service's first symptom in the incident
        for x in inc.signals.values():
            if x.kind != "deploy":
                first[x.service] = min(first.get(x.service, x.first), x.first)
        for svc in sorted(wanted):
            # a service's changes are judged against its own first symptom (one that joined
            # a neighbour's incident later had its change after that incident opened), else
            # against its neighbours' in the incident
            near = [first[n] for n in self.graph.neighbours(svc) if n in first]
            ref = first.get(svc, min(near, default=inc.opened_ts))
            lo, hi = ref - self.settings.change_lookback, ref + self.settings.change_after
            lst = state.changes.get(svc, [])
            for ch in lst:
                if ch["event_id"] in known or not (lo <= ch["ts"] <= hi) \
                        or _superseded(ch, lst, ref) or _restores(ch, lst):
                    continue
                inc.changes.append({**ch, "seconds_before": round(ref - ch["ts"], 1)})
                known.add(ch["event_id"])
                added = True
        inc.changes.sort(key=lambda c: -c["ts"])
        del inc.changes[10:]
        return added

    def _emit(self, inc: IncidentState, status: str, now: float, group: str) -> Incident:
        inc.root = self._root(inc)
        inc.revision += 1 if inc.emitted else 0
        inc.emitted = True
        inc.last_emit = now
        inc.dirty = False
        sigs = sorted(inc.signals.values(), key=lambda s: (s.first, s.fingerprint))
        rules: list[str] = []
        for s in sigs:
            label = f"{s.rule} {s.attrs.get('direction', '')}".strip() if s.rule else s.kind
            if s.service == inc.root and label not in rules:
                rules.append(label)
        others = [s for s in inc.services if s != inc.root]
        title = f"{inc.root}: {', '.join(rules[:3]) or 'symptoms'}"
        if others:
            title += f" (+{len(others)} related: {', '.join(others[:3])})"
        return Incident(
            incident_id=inc.id, status=status, title=title[:300],  # type: ignore[arg-type]
            severity=inc.severity, services=sorted(inc.services), root_service=inc.root,
            fingerprint=inc.fingerprint, signals=[s.to_ref() for s in sigs[-50:]],
            signal_count=inc.count, candidate_changes=[
                {k: v for k, v in c.items() if k != "ts"} for c in inc.changes],
            opened_at=_dt(inc.opened_ts), resolved_at=_dt(inc.resolved_at) if inc.resolved_at else None,
            revision=inc.revision, reopen_count=inc.reopen_count, group=group, time=_dt(now),
            labels=dict(inc.labels), severity_reasons=list(inc.severity_reasons),
            impact=inc.impact, resolved_by=inc.resolved_by,
        )

    def _severity(self, inc: IncidentState) -> str:
        """Severity from impact (:mod:`.severity`); its reasons are kept for the event."""
        a = self.severity.assess(inc.signals.values(), inc.services, self.graph, _dt(inc.last_ts))
        inc.severity_reasons, inc.impact = list(a.reasons), a.impact
        return a.level

    # ------------------------------------------------------------------ transitions
    def update(self, state: GroupState, sig: Signal, now: float) -> list[Incident]:
        """Apply one signal; return the incident events to publish."""
        if sig.kind == "tick":
            return self.tick(state, now)
        # what event time settled before this signal first: an incident quiet through
        # its hold-down is resolved before a new fault's first signal is routed
        due = self._resolve_due(state, now)
        settled = self._settle(state, now) if state.ready else []
        return due + settled + self._apply(state, sig, now)

    def _due(self, inc: IncidentState, now: float) -> float | None:
        """Event time at which ``inc`` resolved if it did by ``now``: the end of its quiet
        hold-down, or of its idle time; None while it is live."""
        if inc.resolved_at is not None:
            return None
        if inc.quiet_since is not None and now - inc.quiet_since >= self.settings.resolve_holddown:
            return inc.quiet_since + self.settings.resolve_holddown
        if now - inc.touched >= self.settings.idle_resolve:
            return inc.touched + self.settings.idle_resolve
        return None

    def _resolve_due(self, state: GroupState, now: float) -> list[Incident]:
        """Resolve the incidents whose hold-down (or idle time) ended by ``now``, each as
        of that moment: a tick that comes late (a busy worker, a replay where a quiet hour
        passes in seconds) or a signal arriving first does not move the resolution."""
        out = []
        for inc in state.incidents:
            at = self._due(inc, now)
            if at is not None:
                out.append(self._resolve(state, inc, min(at, now)))
        return out

    def _apply(self, state: GroupState, sig: Signal, now: float) -> list[Incident]:
        if sig.kind == "resolve":
            return self._resolved_by_hand(state, sig, now)
        out: list[Incident] = []
        self._expire(state, now)
        if sig.kind == "deploy":
            self.stats.changes += 1
            return self._change(state, sig, now)
        self.stats.signals_in += 1
        if sig.status == "resolved":
            return self._resolved(state, sig, now)
        if self._silenced(sig):
            self.stats.silenced += 1
            return out
        inc = state.active_with(sig.fingerprint)
        if inc is not None:
            x = inc.signals[sig.fingerprint]
            if x.active or sig.ts - (x.flips[-1] if x.flips else x.last) <= self.settings.window:
                return self._duplicate(state, inc, sig, now)
            # recovered longer ago than a flap: a new occurrence, routed like a new signal;
            # the incident keeps the old one as history
            del inc.signals[sig.fingerprint]
            inc.signals[f"{sig.fingerprint}#{x.first:.0f}"] = x
        inc = state.resolved_with(sig.fingerprint)
        if inc is not None and inc.resolved_at is not None \
                and now - inc.resolved_at <= self.settings.reopen_window:
            return self._reopen(state, inc, sig, now)
        need = self._min_occurrences(sig)
        if need > 1:
            pend = state.pending.get(sig.fingerprint)
            if pend is None or sig.ts - pend[0] > self.settings.window:
                pend = [sig.ts, 0, now]
            pend[1] += 1
            pend[2] = now
            state.pending[sig.fingerprint] = pend
            if pend[1] < need:
                self.stats.below_threshold += 1
                return out
            state.pending.pop(sig.fingerprint, None)
        target = self._find(state, sig)
        if target is not None:
            return self._join(state, target, sig, now)
        if self._weak(state, sig):
            return self._hold(state, sig, now)
        return self._open_with_held(state, sig, now)

    def _find(self, state: GroupState, sig: Signal) -> IncidentState | None:
        """The incident ``sig`` joins: live near its service at its (event) time."""
        best: tuple[int, float] | None = None
        found = None
        for inc in state.incidents:
            if inc.resolved_at is not None or sig.ts - inc.last_ts > self.settings.window \
                    or inc.opened_ts - sig.ts > self.settings.window:
                continue
            d = self._near(inc, sig.service, sig.ts)
            if d is None:
                continue
            rank = (d, -inc.last_ts)
            if best is None or rank < best:
                best, found = rank, inc
        return found

    # ------------------------------------------------------------------ evidence
    def _weak(self, state: GroupState, sig: Signal) -> bool:
        """Too little evidence to open an incident alone: a warning metric anomaly, a
        critical anomaly of a cause (CPU, memory, disk, pool, queue ...) or moving the
        harmless way, or a warning alert on a cause metric.

        Critical alerts, critical anomalies of a symptom users feel (latency, errors,
        availability) or of a metric of unknown kind, warning alerts on a symptom (rules
        people wrote to page on what users feel), log anomalies (a new error template),
        Kubernetes warnings and predictions open an incident at once. A warning alert on
        CPU or memory alone is a cause without a symptom (a threshold near the usual level
        flaps all day): held like an anomaly. So is a critical anomaly of a cause: the
        detector's judgement that CPU jumped (after a scale-out, say) is no page without
        a symptom beside it (page on symptoms, not on causes). A change in effect lowers
        the evidence a held signal needs (:meth:`_evidence`), it does not skip the
        judgement: a platform-wide movement that a changed service happens to share is
        still no fault of that service.
        """
        if self.settings.open_min_metrics <= 1:
            return False
        if sig.kind == "anomaly":
            direction = -1.0 if sig.attrs.get("direction") == "down" else 1.0
            if not is_bad(sig.rule, direction):
                return True  # less CPU or disk used is no fault, however far it moved
            if sig.severity == "critical":
                return metric_category(sig.rule) not in SYMPTOMS | {"unknown"}
            return True
        if sig.kind == "alert" and sig.severity != "critical":
            # a warning rule on a cause (CPU, memory, disk, pool, queue: not a symptom users
            # feel) pages only with a symptom beside it; a rule whose metric is unknown,
            # like every symptom rule, opens at once
            return metric_category(sig.rule) not in SYMPTOMS | {"unknown"}
        return False

    def _changed(self, state: GroupState, service: str, ts: float) -> bool:
        """Was ``service`` changed (deploy, config) within ``change_lookback`` before
        ``ts``, by a change still in effect?"""
        lst = state.changes.get(service, [])
        return any(0 <= ts - c["ts"] <= self.settings.change_lookback
                   and not _superseded(c, lst, ts) and not _restores(c, lst)
                   for c in lst)

    def _prune_held(self, state: GroupState, ts: float) -> None:
        for fp in [fp for fp, h in state.held.items()
                   if ts - float(h["ts"]) > self.settings.window]:
            del state.held[fp]
        if len(state.held) > MAX_PENDING:
            keep = sorted(state.held.items(), key=lambda kv: -float(kv[1]["ts"]))[:MAX_PENDING]
            state.held = dict(keep)

    def _common_mode(self, state: GroupState, held: list[dict[str, Any]], ts: float) -> set[tuple[str, str]]:
        """(metric, direction) pairs moving on ``common_mode_services`` services or more
        within the window (held signals and those of active incidents)."""
        n = self.settings.common_mode_services
        if n <= 0:
            return set()
        seen: dict[tuple[str, str], set[str]] = {}
        for h in held:
            seen.setdefault((h["rule"], h["direction"]), set()).add(h["service"])
        for inc in state.incidents:
            if inc.resolved_at is not None:
                continue
            for x in inc.signals.values():
                if x.kind == "anomaly" and abs(ts - x.first) <= self.settings.window:
                    seen.setdefault((x.rule, str(x.attrs.get("direction", ""))), set()).add(x.service)
        return {k for k, svcs in seen.items() if len(svcs) >= n}

    def _hold(self, state: GroupState, sig: Signal, now: float) -> list[Incident]:
        """Hold a weak signal until its service shows ``open_min_metrics`` distinct metrics
        firing together, each moving the bad way for its kind (less CPU or disk is no
        fault), none a platform-wide (common-mode) movement, one of them a symptom users
        feel (latency, errors, availability: page on symptoms, not on causes); then open.
        A held signal that recovers first opens nothing; one that joins an incident opened
        by stronger evidence is kept there."""
        self._prune_held(state, sig.ts)
        if sig.fingerprint not in state.held:  # a repeat keeps its onset
            self.stats.held += 1
            state.held[sig.fingerprint] = {
                "ts": sig.ts, "service": sig.service, "rule": sig.rule,
                "direction": str(sig.attrs.get("direction", "")),
                "signal": sig.model_dump(mode="json")}
        if self._evidence(state, sig.service, sig.ts) is None:
            return []
        if self.settings.settle <= 0:
            return self._judge(state, sig.service, sig.ts, now, trigger=sig)
        # complete with this signal: judged once the rest of this moment's signals are in
        state.ready.setdefault(sig.service, sig.ts)
        return []

    def _evidence(self, state: GroupState, service: str,
                  ts: float) -> tuple[list[dict[str, Any]], set[tuple[str, str]]] | None:
        """``service``'s held signals that make the evidence complete (and the common-mode
        movements left out), or None."""
        held = list(state.held.values())
        common = self._common_mode(state, held, ts)
        mine = [h for h in held if h["service"] == service
                and (h["rule"], h["direction"]) not in common
                and is_bad(h["rule"], -1.0 if h["direction"] == "down" else 1.0)]
        # a change in effect is the corroboration: one metric of its own moving the bad
        # way is enough, a cause (memory after a deploy) as well as a symptom
        changed = bool(mine) and self._changed(state, service, ts)
        need = 1 if changed else self.settings.open_min_metrics
        if len({h["rule"] for h in mine}) < need:
            return None
        if not changed and not any(metric_category(h["rule"]) in SYMPTOMS for h in mine):
            return None
        return mine, common

    def _load_rise(self, state: GroupState, ts: float) -> bool:
        """Is demand rising across the platform: request rate, or CPU (which follows it),
        up on ``common_mode_services`` services or more within the window (held signals
        and those of active incidents)? Then resources, queues and latencies move with the
        load (a market burst doubles them for minutes): weak evidence is no fault of one
        service."""
        n = self.settings.common_mode_services
        if n <= 0:
            return False
        seen: dict[str, set[str]] = {}
        for h in state.held.values():
            cat = metric_category(h["rule"])
            if h["direction"] == "up" and cat in LOAD \
                    and abs(ts - float(h["ts"])) <= self.settings.window:
                seen.setdefault(cat, set()).add(h["service"])
        for inc in state.incidents:
            if inc.resolved_at is not None:
                continue
            for x in inc.signals.values():
                cat = metric_category(x.rule)
                if x.kind == "anomaly" and x.attrs.get("direction") == "up" and cat in LOAD \
                        and abs(ts - x.first) <= self.settings.window:
                    seen.setdefault(cat, set()).add(x.service)
        return any(len(svcs) >= n for svcs in seen.values())

    def _judge(self, state: GroupState, service: str, ts: float, now: float,
               trigger: Signal | None = None) -> list[Incident]:
        """Open on ``service``'s held evidence if it is still complete, not common-mode and
        not a platform-wide load rise; opened by ``trigger`` (else the latest of that
        evidence: the one that completed it), the other held signals join."""
        found = self._evidence(state, service, ts)
        if found is None or self._load_rise(state, ts):
            return []
        mine, common = found
        if trigger is None:
            last = max(mine, key=lambda h: float(h["ts"]))
            trigger = Signal.model_validate(last["signal"])
        return self._open_with_held(state, trigger, now, exclude=common)

    def _settle(self, state: GroupState, now: float) -> list[Incident]:
        """Judge the evidence that became complete ``settle`` seconds ago or more."""
        out: list[Incident] = []
        for svc, ts in sorted(state.ready.items(), key=lambda kv: kv[1]):
            if now - ts >= self.settings.settle:
                del state.ready[svc]
                out += self._judge(state, svc, ts, now)
        return out

    def _open_with_held(self, state: GroupState, sig: Signal, now: float,
                        exclude: set[tuple[str, str]] | None = None) -> list[Incident]:
        """Open an incident on ``sig`` and take in the held signals near it (they came
        first; they would have joined it), earliest first."""
        state.held.pop(sig.fingerprint, None)
        self._prune_held(state, sig.ts)
        if exclude is None:
            exclude = self._common_mode(state, list(state.held.values()), sig.ts)
        near = []
        for fp, h in state.held.items():
            if (h["rule"], h["direction"]) in exclude:
                continue
            d = 0 if h["service"] == sig.service else self.graph.distance(
                sig.service, h["service"], limit=self.settings.max_hops)
            if d is not None and d <= self.settings.max_hops:
                near.append(fp)
        extra = [Signal.model_validate(state.held.pop(fp)["signal"])
                 for fp in sorted(near, key=lambda f: float(state.held[f]["ts"]))]
        return self._open(state, sig, now, extra)

    def _open(self, state: GroupState, sig: Signal, now: float,
              extra: list[Signal] | None = None) -> list[Incident]:
        """Open an incident on ``sig`` (with ``extra``: held signals that came first)."""
        iid = hashlib.blake2b(f"{state.group}|{sig.fingerprint}|{sig.ts}".encode(),
                              digest_size=12).hexdigest()
        inc = IncidentState(id=iid, fingerprint=sig.fingerprint, opened_ts=sig.ts, last_ts=sig.ts,
                            services=[sig.service], touched=now)
        inc.add(sig)
        for x in extra or []:
            if x.service not in inc.services:
                inc.services.append(x.service)
            inc.add(x)
            self.stats.joined += 1
        inc.severity = self._severity(inc)
        self._link_changes(state, inc)
        state.incidents.append(inc)
        self.stats.incidents_opened += 1
        return [self._emit(inc, "open", now, state.group)]

    def _join(self, state: GroupState, inc: IncidentState, sig: Signal, now: float) -> list[Incident]:
        self.stats.joined += 1
        new_service = sig.service not in inc.services
        if new_service:
            inc.services.append(sig.service)
        inc.add(sig)
        inc.touched, inc.quiet_since = now, None
        sev = self._severity(inc)
        escalated = _SEV_RANK[sev] > _SEV_RANK[inc.severity]
        inc.severity = sev
        linked = self._link_changes(state, inc)
        if new_service or escalated or linked or now - inc.last_emit >= MIN_UPDATE_INTERVAL:
            return [self._emit(inc, "updated", now, state.group)]
        inc.dirty = True
        return []

    def _duplicate(self, state: GroupState, inc: IncidentState, sig: Signal,
                   now: float) -> list[Incident]:
        s = inc.signals[sig.fingerprint]
        s.count += 1
        s.last = max(s.last, sig.ts)
        inc.count += 1
        inc.last_ts = max(inc.last_ts, sig.ts)
        inc.touched = now
        if not s.active:  # refire inside the hold-down: a flap, never an event
            s.active = True
            s.flip(sig.ts, self.settings.window)
            inc.quiet_since = None
            self.stats.flaps_suppressed += 1
            if len(s.flips) >= self.settings.flap_threshold:
                s.attrs["flapping"] = True
        else:
            self.stats.duplicates += 1
        if _SEV_RANK[sig.severity] > _SEV_RANK[s.severity]:
            s.severity = sig.severity
            sev = self._severity(inc)
            if _SEV_RANK[sev] > _SEV_RANK[inc.severity]:
                inc.severity = sev
                return [self._emit(inc, "updated", now, state.group)]
        return []

    def _reopen(self, state: GroupState, inc: IncidentState, sig: Signal, now: float) -> list[Incident]:
        self.stats.reopened += 1
        inc.resolved_at = None
        inc.resolved_by = None
        inc.reopen_count += 1
        inc.quiet_since = None
        inc.touched = now
        if sig.service not in inc.services:
            inc.services.append(sig.service)
        inc.add(sig)
        inc.signals[sig.fingerprint].flip(sig.ts, self.settings.window)
        inc.severity = self._severity(inc)
        self._link_changes(state, inc)
        return [self._emit(inc, "updated", now, state.group)]

    def _resolved(self, state: GroupState, sig: Signal, now: float) -> list[Incident]:
        state.pending.pop(sig.fingerprint, None)
        if state.held.pop(sig.fingerprint, None) is not None:
            self.stats.unconfirmed += 1  # recovered before anything corroborated it
        inc = state.active_with(sig.fingerprint)
        if inc is None:
            self.stats.resolved_ignored += 1
            return []
        s = inc.signals[sig.fingerprint]
        if s.active:
            s.active = False
            s.flip(sig.ts, self.settings.window)
        if self._quiet(inc, now):
            inc.quiet_since = now
            if self.settings.resolve_holddown <= 0:
                return [self._resolve(state, inc, now)]
        return []

    def _resolved_by_hand(self, state: GroupState, sig: Signal, now: float) -> list[Incident]:
        """A person resolved incident ``sig.ref``: resolve it now (its signals may still
        fire; a new firing of one of them reopens it within the reopen window)."""
        for inc in state.incidents:
            if inc.id == sig.ref and inc.resolved_at is None:
                for x in inc.signals.values():
                    x.active = False
                inc.resolved_by = sig.attrs.get("actor") or sig.summary or "unknown"
                return [self._resolve(state, inc, now)]
        return []

    def _resolve(self, state: GroupState, inc: IncidentState, now: float) -> Incident:
        inc.resolved_at = now
        inc.quiet_since = None
        self.stats.resolved_incidents += 1
        return self._emit(inc, "resolved", now, state.group)

    def _change(self, state: GroupState, sig: Signal, now: float) -> list[Incident]:
        ch = {"event_id": sig.ref, "service": sig.service, "ts": sig.ts,
              "time": sig.time.isoformat(), **sig.attrs}
        lst = [c for c in state.changes.get(sig.service, []) if c["event_id"] != sig.ref]
        lst.append(ch)
        lst.sort(key=lambda c: c["ts"])
        state.changes[sig.service] = lst[-MAX_CHANGES_PER_SERVICE:]
        out = []
        for inc in state.incidents:
            if inc.resolved_at is None and self._link_changes(state, inc):
                out.append(self._emit(inc, "updated", now, state.group))
        return out

    def _quiet(self, inc: IncidentState, now: float) -> bool:
        """No signal live: every one resolved, or (k8s events, predictions: they never
        send a "resolved") silent for longer than it stays live."""
        return not any(self._live(x, now) for x in inc.signals.values())

    def tick(self, state: GroupState, now: float) -> list[Incident]:
        """Time passes: judge settled evidence, resolve quiet/idle incidents, flush pending
        updates, expire state."""
        out = self._settle(state, now)
        for inc in state.incidents:
            if inc.resolved_at is not None:
                continue
            if inc.quiet_since is None and self._quiet(inc, now):
                inc.quiet_since = now
            at = self._due(inc, now)
            if at is not None:
                out.append(self._resolve(state, inc, min(at, now)))
            elif inc.dirty and now - inc.last_emit >= MIN_UPDATE_INTERVAL:
                out.append(self._emit(inc, "updated", now, state.group))
        self._expire(state, now)
        return out

    def _expire(self, state: GroupState, now: float) -> None:
        keep = self.settings.reopen_window
        state.incidents = [i for i in state.incidents
                           if i.resolved_at is None or now - i.resolved_at <= keep]
        if state.pending:
            live = sorted(((v[2], k) for k, v in state.pending.items()
                           if now - v[2] <= self.settings.window), reverse=True)
            state.pending = {k: state.pending[k] for _, k in live[:MAX_PENDING]}
        for svc in list(state.changes):
            lst = [c for c in state.changes[svc]
                   if now - c["ts"] <= self.settings.change_lookback + self.settings.window * 6
                   or c["ts"] > now]
            if lst:
                state.changes[svc] = lst
            else:
                del state.changes[svc]

    @staticmethod
    def next_deadline(state: GroupState, settings: CorrelationSettings) -> float | None:
        """Earliest processing time at which :meth:`tick` may change something."""
        times = []
        expiry = IncidentCorrelator(settings)._expiry
        times += [ts + settings.settle for ts in state.ready.values()]
        for inc in state.incidents:
            if inc.resolved_at is not None:
                continue
            if inc.quiet_since is not None:
                times.append(inc.quiet_since + settings.resolve_holddown)
            else:
                firing = [expiry(x) for x in inc.signals.values() if x.active]
                if firing and max(firing) < math.inf:
                    # quiet once the last signal that never resolves is stale
                    times.append(max(firing))
            times.append(inc.touched + settings.idle_resolve)
            if inc.dirty:
                times.append(inc.last_emit + MIN_UPDATE_INTERVAL)
        return min(times) if times else None

