"""The one lifecycle owner of the worker's clients: built once, injected, closed last.

:class:`Services` is a ``mode.Service`` (what ``faust.Service`` is) added to the
app as its first dependency, so it starts before the consumer and every agent
and stops after them. It holds typed attributes instead of string keys:

=================  =================================================================
``keys``           the signer and keyring of decision events (:mod:`..processors.signing`)
``postgres``       the asyncpg pool behind audit, tickets and action claims (or None)
``targets``        Kubernetes / AWS action back-ends
``slack``          the Slack approvals client (or None)
``notifier``       WeCom / PagerDuty notices of action plans
``channels``       incident notification sinks (Slack threads, WeCom, PagerDuty, e-mail)
``jira``           the Jira mirror of the incident tickets (``tickets.backend: jira``) or None
``readmodel``      the read model, fed by ``projection`` (a group-less consumer)
``silences``      run-time silences (the read model's book; the correlator matches)
``knowledge``      the knowledge base (Qdrant) RCA and the pattern views search, or None
``llm``            the Anthropic analyst of the RCA stage (disabled without a key)
=================  =================================================================

What a stage builds for the others (detectors, the correlator, the API) is in
the context's typed :class:`~.context.Stages`, never under string keys.

On start the signing key is loaded (or generated once into the data dir), and
PostgreSQL is connected right away — not at the first event — with retries in
the background while it is down. :meth:`Services.ready_to_decide` is what the
approval manager and the executor await before their first event: clients
started, the first PostgreSQL attempt made, and the read model caught up with
the topics as they were at start (so incident status is known after a restart).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from mode import Service

from ..config import ConfigError, Settings
from ..processors.signing import Keyring, Signer, SigningError, load_public_key
from ..readmodel import ReadModel
from ..sinks.audit import AuditStore
from ..sinks.channels import Channels
from ..sinks.knowledge import KnowledgeBase
from ..sinks.llm import LlmAnalyst
from ..sinks.notify import Notifier
from ..sinks.slack import SlackApprovals
from ..sinks.tickets import JiraTickets
from ..sinks.targets import ActionTargets
from .projection import Projection

__all__ = ["Keys", "Services", "load_keys"]

log = logging.getLogger(__name__)

KEY_FILE = "signing-key.pem"
#: seconds between PostgreSQL connection attempts while it is down
PG_RETRY = 5.0


class Keys:
    """The agent's signing key and the public keys it accepts."""

    def __init__(self, signer: Signer, trusted: list[Any] | None = None) -> None:
        self.signer = signer
        self.keyring = Keyring([signer.public, *(trusted or [])])


def load_keys(settings: Settings) -> Keys:
    """From ``security.signing_key``; else the data dir's key file (made once, mode 0600)."""
    sec = settings.security
    try:
        trusted = [load_public_key(k) for k in sec.trusted_keys]
        if sec.signing_key is not None:
            return Keys(Signer.from_text(sec.signing_key.get_secret_value()), trusted)
        path = Path(settings.worker.data_dir) / KEY_FILE
        if path.exists():
            return Keys(Signer.from_text(path.read_text(encoding="ascii")), trusted)
    except SigningError as exc:
        raise ConfigError(f"invalid configuration: security: {exc}") from None
    signer = Signer.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(signer.private_pem())
    log.warning("no security.signing_key configured: generated %s (key id %s). Replicas "
                "must share one key: set SRE_AGENT_SECURITY__SIGNING_KEY from a Secret.",
                path, signer.key_id)
    return Keys(signer, trusted)


class Services(Service):
    """Typed owner of every client the stages share."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        dsn = settings.postgres.dsn
        self.postgres: AuditStore | None = AuditStore(dsn.get_secret_value()) if dsn else None
        self.targets = ActionTargets.from_settings(settings)
        self.slack: SlackApprovals | None = SlackApprovals.from_settings(settings.slack)
        self.notifier = Notifier(settings.notify)
        self.channels = Channels.from_settings(
            settings, self.slack.client if self.slack is not None else None)
        t = settings.tickets
        if t.backend == "jira" and self.postgres is None:
            raise ConfigError("invalid configuration: tickets.backend jira needs postgres.dsn "
                              "(the ticket row keeps the Jira issue key)")
        self.jira: JiraTickets | None = JiraTickets(
            t, t.jira_timeout, settings.notify.console_url) if t.backend == "jira" else None
        api = settings.api
        self.readmodel = ReadModel(api.readmodel_max_items, api.chart_max_series, api.chart_points)
        #: run-time silences, folded from the compacted ``silences`` topic by the projection
        self.silences = self.readmodel.silences
        self.projection = Projection(settings, self.readmodel)
        self.knowledge: KnowledgeBase | None = KnowledgeBase(
            settings.qdrant, settings.knowledge, data_dir=settings.worker.data_dir,
        ) if settings.knowledge.enabled else None
        self.llm = LlmAnalyst(settings.anthropic)
        self._keys: Keys | None = None
        self._pg_tried = asyncio.Event()

    # ------------------------------------------------------------------ keys
    @property
    def keys(self) -> Keys:
        """Loaded at start (or on first use by code running before it, e.g. tests)."""
        if self._keys is None:
            self._keys = load_keys(self.settings)
        return self._keys

    # ------------------------------------------------------------------ lifecycle
    async def on_start(self) -> None:
        _ = self.keys
        log.info("decision events signed with key %s; trusted keys %s",
                 self.keys.signer.key_id, self.keys.keyring.key_ids)
        if self.postgres is None:
            self._pg_tried.set()

    @Service.task
    async def _connect_postgres(self) -> None:
        """Connect now, and keep trying while the database is down."""
        store = self.postgres
        if store is None:
            return
        while not self.should_stop:
            try:
                await asyncio.wait_for(store.setup(), timeout=10.0)
                log.info("PostgreSQL connected")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - down: the stages fall back and retry
                log.warning("PostgreSQL unavailable (retrying in %.0fs): %s", PG_RETRY, exc)
                store.pool = None
            finally:
                self._pg_tried.set()
            await self.sleep(PG_RETRY)

    @Service.task
    async def _project(self) -> None:
        await self.projection.run()

    async def on_stop(self) -> None:
        for name, close in (("targets", self.targets.close), ("notifier", self.notifier.close),
                            ("channels", self.channels.close),
                            ("postgres", self.postgres.close if self.postgres else None),
                            ("knowledge", self.knowledge.close if self.knowledge else None),
                            ("llm", self.llm.close)):
            if close is None:
                continue
            try:
                await asyncio.wait_for(close(), timeout=5.0)
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                log.warning("closing %s failed: %s", name, exc)

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> dict[str, Any]:
        return {"key_id": self._keys.signer.key_id if self._keys is not None else None,
                "started": self._started.is_set() if hasattr(self, "_started") else False,
                "postgres_tried": self._pg_tried.is_set(),
                "postgres": self.postgres is None or self.postgres.pool is not None,
                "readmodel_caught_up": self.projection.caught_up}

    def decisions_ready(self) -> bool:
        """:meth:`ready_to_decide` without waiting."""
        return self._pg_tried.is_set() and self.projection.ready.is_set()

    async def ready_to_decide(self) -> None:
        """Wait until a decision stage may act: PostgreSQL tried, read model caught up."""
        await self._pg_tried.wait()
        await self.projection.ready.wait()
