"""The single Faust app: created from settings, every stage wired here.

Stages are listed explicitly in :data:`STAGES`; each is a module with a
``register(ctx)`` function that declares its agents, tables, timers and views.
"""

from __future__ import annotations

import logging
from types import ModuleType

import faust

from ..config import Settings
from ..sinks.kafka import faust_credentials
from .. import web
from . import (
    approval_agent,
    audit_agent,
    collectors,
    correlate_agent,
    executor_agent,
    ingest,
    knowledge_agent,
    logs_agent,
    metrics_agent,
    notify_agent,
    outcome_agent,
    rca_agent,
    risk_agent,
)
from . import consumer_tuning, faust_fixes
from .context import StreamContext
from .services import Services
from .tables import STORE_URL, Tables
from .topics import Topics

__all__ = ["STAGES", "create_app"]

log = logging.getLogger(__name__)

#: every stage of the loop, in pipeline order (autodiscovery is off on purpose)
STAGES: list[ModuleType] = [
    web,  # the HTTP surface: /status, REST API, webhooks, Slack, console, /metrics
    collectors,  # Prometheus/Loki/CloudWatch pollers, remote-write receiver
    ingest,  # k8s watch
    metrics_agent,  # metrics -> baselines -> anomalies, predictions
    logs_agent,  # logs -> templates -> anomalies
    correlate_agent,  # anomalies/alerts/predictions/k8s/deploys -> incidents
    notify_agent,  # incidents/rca/triage -> Slack threads, PagerDuty, WeCom, e-mail (routed)
    rca_agent,  # incidents -> rca-results
    knowledge_agent,  # feedback/rca -> knowledge base
    risk_agent,  # rca-results -> action-plans
    approval_agent,  # action-plans + approvals -> sre-actions
    executor_agent,  # sre-actions -> action-results
    outcome_agent,  # verified action-results -> feedback (learning loop)
    audit_agent,  # audit -> PostgreSQL
]


def create_app(settings: Settings) -> tuple[faust.App, StreamContext]:
    """Build the app and wire every stage; nothing connects until it runs."""
    faust_fixes.apply()
    w, k = settings.worker, settings.kafka
    app = faust.App(
        w.app_id,
        broker=k.broker,
        broker_credentials=faust_credentials(k),
        store=STORE_URL,  # RocksDB; one cache and memtable budget for all tables
        datadir=str(w.data_dir),
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication,
        table_standby_replicas=w.table_standby_replicas,
        web_enabled=True,
        web_host=w.web_host,
        web_port=w.web_port,
        web_bind=w.web_host,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=5,
        stream_buffer_maxsize=w.stream_buffer_maxsize,
        consumer_max_fetch_size=w.max_partition_fetch_bytes,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        broker_session_timeout=w.session_timeout,
        broker_heartbeat_interval=w.heartbeat_interval,
        topic_allow_declare=True,
        # remote-write pushes and webhooks: bodies up to 16 MiB, larger -> 413
        web_application_options={"client_max_size": 16 * 2**20},
        # Faust's own pages (/router, /table, /graph, stats) would expose table contents
        # without auth: off. Our views authenticate; /status is the public health page.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        # Faust would read bare variables (WEB_PORT, BROKER_URL, ...) from os.environ over
        # these settings; Kubernetes service links define such names. Settings come only
        # from our Settings object.
        env={},
    )
    consumer_tuning.configure(app, w)
    # the clients' owner starts first (before the consumer and the agents), stops last
    services = Services(settings)
    app.add_dependency(services)
    ctx = StreamContext(settings=settings, app=app, topics=Topics(app, settings),
                        tables=Tables(app, settings), services=services)
    for stage in STAGES:
        stage.register(ctx)
    return app, ctx
