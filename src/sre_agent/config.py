"""Typed settings for the whole agent.

One frozen :class:`Settings` object is built at the entry point (CLI) from, in
order of precedence: explicit overrides, environment variables
(``SRE_AGENT_<SECTION>__<FIELD>``), and an optional YAML file
(``SRE_AGENT_CONFIG`` or ``--config``). It is then passed down; no other module
reads ``os.environ``.

Secrets (``SecretStr`` fields) are accepted from the environment only: a secret
found in the YAML file is a configuration error, so config files can be
committed and shared without leaking credentials.

Examples
--------
>>> s = load_settings(env={"SRE_AGENT_KAFKA__BROKER": "kafka://127.0.0.1:9999"})
>>> s.kafka.broker
'kafka://127.0.0.1:9999'
>>> s.actions.dry_run
True
>>> try:
...     load_settings(env={"SRE_AGENT_KAFKA__PARTITIONS": "zero"})
... except ConfigError as exc:
...     print(exc)
invalid configuration: kafka.partitions: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

__all__ = ["ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "SRE_AGENT_"


class ConfigError(ValueError):
    """Raised when configuration is invalid; the message names the bad field."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    broker: str = "kafka://127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = Field(default=4, ge=1, le=1024)
    replication: int = Field(default=1, ge=1, le=7)
    #: how every Kafka client (worker, read model, CLI) connects: TLS and/or SASL/SCRAM
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    #: env only (SRE_AGENT_KAFKA__SASL_PASSWORD)
    sasl_password: SecretStr | None = None
    #: CA bundle that signed the brokers' certificates (default: the system's)
    ssl_cafile: Path | None = None
    #: client certificate and key for mutual TLS (optional)
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True


class WorkerSettings(_Section):
    app_id: str = "sre-agent"
    data_dir: Path = Path("./data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    #: consumer-group liveness: a worker silent this long (s) loses its partitions
    session_timeout: float = Field(default=60.0, ge=1)
    heartbeat_interval: float = Field(default=3.0, gt=0)
    #: readiness (/readyz): a stage with events waiting in its buffer that took none for
    #: this long (s) is stalled and the worker not ready; 0 turns the check off
    stall_seconds: float = Field(default=180.0, ge=0)
    #: how often (seconds) dirty per-series model state is written to the table, at most:
    #: the metrics stage waits longer while its previous checkpoint is unacknowledged,
    #: and so that checkpoints take at most a tenth of the time from start to the
    #: broker's acknowledgement (streams/checkpoints.py)
    checkpoint_interval: float = Field(default=5.0, gt=0)
    #: the longest that last rule makes a partition wait (seconds): a killed worker
    #: replays its input since the last checkpoint, up to this long (a clean stop
    #: checkpoints first). Longer: less written when the state is large for the broker
    checkpoint_max_interval: float = Field(default=30.0, gt=0)
    #: largest state record (bytes): a leaf of series' states that would pass it is split
    #: (processors/blobs.py); well under Kafka's message.max.bytes (1 MB by default)
    state_record_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=900 * 1024)
    #: Faust stream buffer: messages taken per batch by the metrics agent
    batch_size: int = Field(default=200, ge=1)
    batch_timeout: float = Field(default=0.05, gt=0)
    log_level: str = "INFO"
    #: level of the frameworks' own loggers (faust, mode, aiokafka); INFO shows
    #: rebalances and changelog recovery step by step
    framework_log_level: str = "WARNING"
    log_json: bool = True
    #: standby replicas of every table on other workers (fast failover; Faust setting)
    table_standby_replicas: int = Field(default=1, ge=0, le=8)
    #: consumer fetching (docs/benchmarks.md, "Ingest"): the longest the broker holds a
    #: fetch for partitions without data. aiokafka sends one fetch per broker at a time,
    #: so while it waits on idle topics, data arriving on busy partitions waits too
    #: (Faust fixes 1,500 ms)
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=30_000)
    #: bytes fetched per partition / per fetch request
    max_partition_fetch_bytes: int = Field(default=4 * 2**20, ge=64 * 1024)
    fetch_max_bytes: int = Field(default=64 * 2**20, ge=64 * 1024)
    #: messages a stream holds before fetching pauses (Faust's stream_buffer_maxsize)
    stream_buffer_maxsize: int = Field(default=4096, ge=1)
    #: the cyclic garbage collector's young-generation threshold in the worker (net
    #: container allocations between collections; 0 keeps Python's 700). At 700 the
    #: ingest path (a few containers per sample) collects every few hundred samples and
    #: promotes what is in flight, so full collections scan the per-series state again
    #: and again: ~10 % of the worker's CPU (docs/benchmarks.md, issue 18)
    gc_threshold: int = Field(default=50_000, ge=0)
    #: RocksDB memory of every table's partition databases together (docs/benchmarks.md,
    #: issue 18). Faust's defaults give each database its own 2 GiB block cache and up to
    #: 3 x 64 MiB of memtables, so RSS grew with the bytes a worker ever wrote (a block of
    #: each version of a state leaf it read back stayed cached). The block cache is one LRU
    #: cache shared by all databases; the memtables of all of them are held under one
    #: budget (a write buffer manager: the database written to flushes when it is near).
    #: 0 in either: Faust's defaults for both (a cache and memtables per database)
    rocksdb_block_cache_bytes: int = Field(default=16 * 2**20, ge=0)
    rocksdb_memtable_bytes: int = Field(default=32 * 2**20, ge=0)
    #: glibc's mmap threshold in the worker (bytes; streams/allocator.py): blocks at least
    #: this large are mapped on their own and given back when freed. glibc's default
    #: rises with every large block freed, and 256 KiB state leaves then leave free holes
    #: in the heap that stay in RSS (issue 18). 0: glibc's default
    malloc_mmap_threshold: int = Field(default=128 * 1024, ge=0, le=32 * 2**20)


class PostgresSettings(_Section):
    dsn: SecretStr | None = None


class DetectorRule(_Section):
    """A River detector for a metric family: names matching ``match`` (glob) whose labels
    include every ``labels`` item (values are globs). The first matching rule wins."""

    match: str = Field(default="*", min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    #: ``calibrated_tail`` (the default, vectorised), ``half_space_trees`` or ``predictive``
    detector: Literal["calibrated_tail", "half_space_trees", "predictive"]


class AnomalySettings(_Section):
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    #: per-metric-name overrides of the threshold
    overrides: dict[str, float] = Field(default_factory=dict)
    warmup_samples: int = Field(default=30, ge=1)
    #: River detector per metric family (first match wins; no match: ``calibrated_tail``)
    detectors: list[DetectorRule] = Field(default_factory=list)


class LimitRule(_Section):
    """A saturation limit for early warning: metric names matching ``match`` (glob)."""

    match: str = Field(min_length=1)
    limit: float
    #: ``above``: breach when the value rises to ``limit``; ``below``: when it falls to it
    direction: Literal["above", "below"] = "above"
    #: optional label carrying a per-series limit (e.g. ``limit``), used when present
    limit_label: str | None = None


def _default_limit_rules() -> list[LimitRule]:
    r = LimitRule
    return [
        r(match="memory_limit_ratio", limit=1.0),  # OOMKilled at the container limit
        r(match="*memory*_ratio", limit=1.0),
        r(match="disk_used_ratio", limit=0.9),
        r(match="*disk*_ratio", limit=0.9),
        r(match="*filesystem*_ratio", limit=0.9),
        r(match="*connection*pool*_ratio", limit=1.0),
        r(match="*connections*_ratio", limit=1.0),
        r(match="*queue_depth*", limit=10_000.0, limit_label="limit"),
        r(match="*error_budget_remaining*", limit=0.0, direction="below"),
    ]


class PredictionSettings(_Section):
    """Early warning: time until a saturation series breaches its limit."""

    enabled: bool = True
    #: warn when the breach is expected within this many hours (seeds: 1-6 h, tunable 3-12)
    horizon_hours: float = Field(default=6.0, gt=0, le=48)
    #: least confidence (probability of being past the limit at the horizon) to warn
    min_confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    #: samples are averaged into buckets of this many seconds before the trend model
    bucket_seconds: float = Field(default=300.0, ge=10)
    #: buckets of history needed before forecasting
    min_buckets: int = Field(default=12, ge=3)
    #: Holt smoothing of level and trend (River ``time_series.HoltWinters``)
    alpha: float = Field(default=0.2, gt=0, lt=1)
    beta: float = Field(default=0.05, gt=0, lt=1)
    #: a series' warning is repeated at most this often unless its ETA halves
    repeat_minutes: float = Field(default=30.0, ge=0)
    rules: list[LimitRule] = Field(default_factory=_default_limit_rules)


class LogPatternSettings(_Section):
    """Online log template mining and per-template rate baselines."""

    enabled: bool = True
    #: Drain: share of equal tokens for a line to join a template
    similarity: float = Field(default=0.5, gt=0, le=1)
    #: Drain tree depth (tokens used as prefix keys)
    depth: int = Field(default=2, ge=1, le=6)
    #: most templates kept per service (least recently seen are evicted)
    max_templates: int = Field(default=1000, ge=10)
    #: rate window of the per-template counts (seconds of event time)
    window_seconds: float = Field(default=60.0, ge=1)
    #: lines a service must have logged before a new error template is "never seen before"
    warmup_lines: int = Field(default=200, ge=0)
    #: and seconds since its first line
    warmup_seconds: float = Field(default=900.0, ge=0)
    #: levels counted as errors (lower case); other lines count when the message says so
    error_levels: list[str] = Field(default_factory=lambda: [
        "error", "err", "fatal", "critical", "crit", "panic", "alert", "emerg", "emergency"])
    #: a new-template anomaly resolves after this many windows without the template
    quiet_windows: int = Field(default=5, ge=1)


class SlackSettings(_Section):
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    channel: str = "#sre-approvals"
    base_url: str = "https://slack.com/api/"
    #: request timeout and retries (connection errors, 429 with Retry-After, 5xx) of the
    #: Web API client, with slack-sdk's exponential backoff
    timeout: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    #: consecutive failed posts that open the circuit breaker (plans then wait for API
    #: votes without waiting on Slack), and how long it stays open
    breaker_failures: int = Field(default=3, ge=1)
    breaker_reset_seconds: float = Field(default=60.0, gt=0)
    #: Slack user id (or user name) -> role for the ``/sre`` slash command: an approval
    #: role (oncall, sre, lead, admin) or ``viewer`` (read-only commands)
    user_roles: dict[str, str] = Field(default_factory=dict)
    #: least role (mapped by Slack user id) for the read commands of ``/sre`` (status,
    #: incidents, rca, pattern search); ``any``: every user of the signed workspace
    read_role: Literal["any", "viewer", "oncall", "sre", "lead", "admin"] = "viewer"


class AnthropicSettings(_Section):
    api_key: SecretStr | None = None
    base_url: str | None = None
    model: str = "claude-sonnet-4-5"
    timeout: float = Field(default=30.0, gt=0)
    max_tokens_per_incident: int = Field(default=8000, ge=256)
    #: retries of a failed call (connection error, 408/409/429/5xx), exponential backoff
    #: with jitter (the Anthropic SDK's: 0.5 s doubling up to 8 s)
    max_retries: int = Field(default=2, ge=0, le=10)
    #: consecutive failed calls that open the circuit breaker (RCA then uses the rules at
    #: once), and how long it stays open before a trial call
    breaker_failures: int = Field(default=3, ge=1)
    breaker_reset_seconds: float = Field(default=60.0, gt=0)


class QdrantSettings(_Section):
    url: str | None = None
    api_key: SecretStr | None = None
    path: Path | None = None
    collection_prefix: str = "sre"


class KubernetesSettings(_Section):
    enabled: bool = False
    in_cluster: bool = False
    kubeconfig: Path | None = None
    host: str | None = None
    token: SecretStr | None = None
    #: watch and act in these namespaces only (a namespaced Role each); [] = all namespaces
    namespaces: list[str] = Field(default_factory=list)
    #: act on a simulated cluster instead (``sre-agent eval`` sets it to the simulator's
    #: cluster API): it then serves Kubernetes and AWS targets alike
    simulator_url: str | None = None


class AwsSettings(_Section):
    enabled: bool = False
    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None


class ActionSettings(_Section):
    #: dry-run by default: actions are planned, audited and simulated, not executed
    dry_run: bool = True
    #: auto-remediation (LOW tier executes without a human) is off by default
    auto_remediation: bool = False
    max_actions_per_resource_per_hour: int = Field(default=3, ge=1)
    protected: list[str] = Field(
        default_factory=lambda: [
            "wallet*",
            "*balance*",
            "order*",
            "matching-engine*",
            "*-db",
            "postgres*",
        ]
    )
    playbooks_dir: Path | None = None
    #: how long a plan waits for its approvals before it expires
    approval_ttl_seconds: float = Field(default=3600.0, gt=0)
    #: API user -> approval role (oncall, sre, lead, admin); Slack users: slack.user_roles
    approvers: dict[str, str] = Field(default_factory=dict)
    #: business criticality in [0, 1] per service glob (first match wins)
    criticality: dict[str, float] = Field(
        default_factory=lambda: {
            "matching-engine*": 1.0,
            "wallet*": 1.0,
            "order*": 0.9,
            "*gateway*": 0.8,
            "market-data*": 0.7,
        }
    )
    default_criticality: float = Field(default=0.5, ge=0.0, le=1.0)
    #: UTC windows "HH:MM-HH:MM" (optionally prefixed "Mon-Fri ") of peak trading;
    #: acting inside them adds risk. A 24/7 exchange trades all day by default.
    trading_hours: list[str] = Field(default_factory=lambda: ["00:00-24:00"])
    #: hypotheses below this confidence get no action plan (diagnosis only)
    min_confidence: float = Field(default=0.3, ge=0.0, le=1.0)
    #: Kubernetes namespace per service glob; default_namespace otherwise
    namespaces: dict[str, str] = Field(default_factory=dict)
    default_namespace: str = "default"
    #: skip an action when its incident is not known to be open
    require_open_incident: bool = True
    #: how often post-action verification polls its signal (seconds)
    verify_poll_seconds: float = Field(default=1.0, gt=0)
    #: lease on an in-flight action's durable claim (PostgreSQL), renewed by its owner
    #: every third of it; when it runs out (the owner stopped) another worker, or the
    #: owner's restart, takes the claim over and finishes the action
    claim_lease_seconds: float = Field(default=30.0, ge=3.0)


class ScopeSelector(_Section):
    """One routing selector: every field given must match (a list: any of its values).

    ``severity`` is info/warning/critical; ``service``/``namespace``/``title`` and the
    ``labels`` values are shell globs. A service selector matches when any of the
    incident's services matches.
    """

    severity: list[Literal["info", "warning", "critical"]] | None = None
    service: list[str] | None = None
    namespace: list[str] | None = None
    title: list[str] | None = None
    labels: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if isinstance(data, dict):  # Robusta style: a single value or a list
            data = {k: [v] if isinstance(v, str) and k != "labels" else v for k, v in data.items()}
        return data


class SinkScope(_Section):
    """Robusta's ``scope``: an incident must match one ``include`` selector (all when
    there is none) and no ``exclude`` selector."""

    include: list[ScopeSelector] = Field(default_factory=list)
    exclude: list[ScopeSelector] = Field(default_factory=list)


class NotifySink(_Section):
    """One notification sink (Robusta's ``sinksConfig`` entries).

    Written either flat (``{type: slack, name: oncall, channel: "#oncall"}``) or in
    Robusta's shape (``{slack_sink: {name: oncall, channel: "#oncall"}}``). Secrets
    (WeCom webhook URL, PagerDuty routing key, SMTP password) are named by ``secret``
    and come from ``notify.secrets`` (environment only).
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["slack", "wecom", "pagerduty", "email"]
    scope: SinkScope = SinkScope()
    #: 0: on open. > 0: escalation, only if the incident is still open, unacknowledged
    #: and not snoozed this many seconds after the agent first saw it
    escalate_after: float = Field(default=0.0, ge=0)
    send_resolved: bool = True
    #: slack: channel (id ``C…`` preferred, or ``#name``); updates go in the incident's thread
    channel: str | None = None
    #: name of the secret in ``notify.secrets``: wecom webhook URL, pagerduty routing
    #: key, email SMTP password
    secret: str | None = None
    #: pagerduty: Events API v2 endpoint
    url: str = "https://events.pagerduty.com/v2/enqueue"
    #: email
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_user: str | None = None
    from_addr: str = "sre-agent@localhost"
    to: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _robusta(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) == 1:
            (key, body), = data.items()
            if isinstance(key, str) and key.endswith("_sink") and isinstance(body, dict):
                kind = key[: -len("_sink")]
                body = dict(body)
                if kind == "slack" and "slack_channel" in body:
                    body["channel"] = body.pop("slack_channel")
                return {"type": kind, **body}
        return data

    @model_validator(mode="after")
    def _complete(self) -> NotifySink:
        need = {"slack": self.channel, "wecom": self.secret, "pagerduty": self.secret,
                "email": self.smtp_host and self.to}
        if not need[self.type]:
            what = {"slack": "channel", "wecom": "secret (the webhook URL's name in notify.secrets)",
                    "pagerduty": "secret (the routing key's name in notify.secrets)",
                    "email": "smtp_host and to"}[self.type]
            raise ValueError(f"sink {self.name!r} ({self.type}) needs {what}")
        return self


class NotifySettings(_Section):
    #: WeCom (企业微信) group-robot webhook URL (it embeds the robot key: env only)
    wecom_webhook_url: SecretStr | None = None
    #: PagerDuty Events v2 routing (integration) key: env only
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    timeout: float = Field(default=10.0, gt=0)
    #: incident notification sinks with their routing scopes (docs/oncall.md). Empty: one
    #: sink per configured channel (Slack ``slack.channel``, WeCom, PagerDuty for critical)
    sinks: list[NotifySink] = Field(default_factory=list)
    #: secrets the sinks name (webhook URLs, routing keys, SMTP passwords): env only
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    #: link to an incident in messages: ``{incident_id}`` is replaced
    console_url: str | None = None
    #: how often due escalations and retries are looked for (seconds)
    tick_interval: float = Field(default=5.0, gt=0)
    #: attempts of a failing send before it is given up (and audited as failed)
    max_attempts: int = Field(default=5, ge=1, le=50)

    @model_validator(mode="after")
    def _sinks(self) -> NotifySettings:
        names = [s.name for s in self.sinks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate sink names: {dup}")
        for s in self.sinks:
            if s.secret is not None and s.secret not in self.secrets:
                raise ValueError(f"sink {s.name!r} names secret {s.secret!r}, which is not in "
                                 "notify.secrets (set SRE_AGENT_NOTIFY__SECRETS)")
        return self


class TicketSettings(_Section):
    #: "postgres" keeps incident tickets in PostgreSQL; "jira" mirrors them to Jira too
    #: (needs postgres.dsn: the ticket row keeps the Jira key)
    backend: str = Field(default="postgres", pattern="^(postgres|jira)$")
    jira_url: str | None = None
    jira_project: str = "OPS"
    jira_user: str | None = None
    jira_token: SecretStr | None = None
    #: issue type of the created issues (must exist in the project)
    jira_issue_type: str = "Task"
    #: the first of these transitions the issue offers is taken on resolve
    jira_resolve_transitions: list[str] = Field(default_factory=lambda: [
        "Resolve Issue", "Resolve", "Done", "Close Issue", "Close"])
    jira_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _jira(self) -> TicketSettings:
        if self.backend == "jira":
            missing = [n for n in ("jira_url", "jira_user", "jira_token") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"backend jira needs {', '.join(missing)} (the token from "
                                 "SRE_AGENT_TICKETS__JIRA_TOKEN)")
        return self


class ApiSettings(_Section):
    #: bearer tokens -> role (viewer, operator, approver, admin); env only
    tokens: dict[str, str] = Field(default_factory=dict)
    webhook_token: SecretStr | None = None
    #: read model of the API/console: hours of topic history replayed at start
    readmodel_lookback_hours: float = Field(default=24.0, gt=0)
    #: read model bound per kind (incidents, anomalies, audit records ...)
    readmodel_max_items: int = Field(default=5000, ge=10)
    #: console charts: series tracked (those with anomalies) and points kept per series
    chart_max_series: int = Field(default=200, ge=1)
    chart_points: int = Field(default=720, ge=10)
    #: link out to Grafana/Prometheus for a series: ``{query}`` is replaced by the URL-encoded
    #: PromQL selector, ``{from}``/``{to}`` by unix milliseconds (e.g.
    #: ``http://prometheus:9090/graph?g0.expr={query}&g0.range_input=1h``)
    metrics_url: str | None = None
    #: external runbook link: ``{id}`` is replaced by the runbook's id (file name)
    runbook_url: str | None = None


class SecuritySettings(_Section):
    """Signatures on decision events (action-plans, approvals, sre-actions, action-results)."""

    #: Ed25519 private key (PKCS#8 PEM or base64 of 32 bytes); env only. Unset: a key is
    #: generated once into ``<data_dir>/signing-key.pem`` (fine for one worker; replicas
    #: must share one key, so set it from a Secret)
    signing_key: SecretStr | None = None
    #: further public keys whose signatures are accepted (PEM or base64 of 32 bytes),
    #: e.g. the previous key during a rotation
    trusted_keys: list[str] = Field(default_factory=list)


class SilenceSettings(_Section):
    """A silence or maintenance window: signals matching every matcher are dropped.

    Matchers are shell globs on signal fields (``service``, ``name``, ``kind``,
    ``severity``, ``fingerprint``) or on labels; times are UTC (open-ended when None).
    """

    matchers: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    comment: str = ""


class CorrelationSettings(_Section):
    #: sliding window (s): a signal joins an incident active within this much event time
    window: float = Field(default=600.0, gt=0)
    #: service dependency graph, ``[caller, callee]`` pairs
    edges: list[tuple[str, str]] = Field(default_factory=list)
    #: graph hops between a new signal's service and an incident's services to group them
    max_hops: int = Field(default=1, ge=0, le=5)
    silences: list[SilenceSettings] = Field(default_factory=list)
    #: a recurrence within this many seconds after resolution reopens the incident
    reopen_window: float = Field(default=1800.0, ge=0)
    #: quiet seconds after the last signal resolved before the incident is resolved
    resolve_holddown: float = Field(default=120.0, ge=0)
    #: an incident with no new signal for this long is resolved anyway
    idle_resolve: float = Field(default=3600.0, gt=0)
    #: state flips of one fingerprint within the window that mark it flapping
    flap_threshold: int = Field(default=4, ge=2)
    #: rule glob (alert name / metric / k8s reason) -> occurrences needed to open
    min_occurrences: dict[str, int] = Field(default_factory=dict)
    #: deploys/config changes this many seconds before an incident are candidate causes
    change_lookback: float = Field(default=7200.0, gt=0)
    #: ... and this many seconds after it opened (a sync reported when it completed);
    #: later changes (e.g. its own remediation) cannot have caused it
    change_after: float = Field(default=120.0, ge=0)
    #: a prediction not repeated for this long no longer holds its incident open
    #: (early warnings repeat every ``prediction.repeat_minutes`` while still expected)
    prediction_stale: float = Field(default=3600.0, gt=0)
    tick_interval: float = Field(default=5.0, gt=0)
    #: minimum evidence to open an incident on warning metric anomalies alone: this many
    #: distinct metrics of one service firing together (1: any anomaly opens one); alerts,
    #: critical anomalies, log anomalies, Kubernetes warnings and predictions open at once
    open_min_metrics: int = Field(default=2, ge=1, le=10)
    #: a metric moving the same way on this many services within the window is a
    #: platform-wide (common-mode) change, no evidence of a fault of one (0: off)
    common_mode_services: int = Field(default=3, ge=0)
    #: event seconds to wait before weak evidence (held warning anomalies) opens an
    #: incident, so the other signals of the same scrape are in when it is judged
    #: (common-mode and platform-wide load are only visible once they all arrived)
    settle: float = Field(default=60.0, ge=0)


class SeveritySettings(_Section):
    """Incident severity from impact (:mod:`sre_agent.processors.severity`, docs/oncall.md).

    Business criticality, protected services and trading hours come from ``actions``.
    """

    #: availability objective whose error budget burn is measured (0.999: 0.1 % budget)
    slo_target: float = Field(default=0.999, gt=0.5, lt=1.0)
    #: metric globs whose values are error ratios in [0, 1] (their burn rate = value / budget)
    error_ratio_metrics: list[str] = Field(default_factory=lambda: [
        "*error*ratio*", "*error_rate*", "*errors_rate*", "*failure*ratio*", "*5xx*ratio*"])
    #: burn rate that pages at once (Google SRE workbook: 2 % of a 30-day budget in 1 h)
    page_burn_rate: float = Field(default=14.4, gt=0)
    #: burn rate that counts as full business impact (5 % of the budget in 6 h)
    high_burn_rate: float = Field(default=6.0, gt=0)
    #: impact thresholds of critical and warning (below: info)
    critical_at: float = Field(default=0.75, gt=0, le=1)
    warning_at: float = Field(default=0.35, ge=0, le=1)
    #: business impact of a service outside the trading hours, as a share of its criticality
    off_hours_factor: float = Field(default=0.7, ge=0, le=1)
    #: an alert rule's own severity label is kept as a floor (a person chose it)
    alert_severity_floor: bool = True


class KnowledgeSettings(_Section):
    enabled: bool = True
    #: Markdown runbooks folder (default: the packaged ``sre_agent/runbooks``)
    runbooks_dir: Path | None = None
    #: ``lexical``: hashed sparse vectors, no model download (docs/knowledge-base.md)
    embedding: Literal["lexical"] = "lexical"
    min_similarity: float = Field(default=0.15, ge=0.0, le=1.0)


class PromQuerySettings(_Section):
    """One PromQL query polled by the Prometheus/Mimir collector."""

    #: metric name given to every result series (e.g. ``http_latency_p99_seconds``)
    name: str = Field(min_length=1, max_length=256)
    expr: str = Field(min_length=1)
    #: seconds between polls of this query (default: the collector's interval)
    interval: float | None = Field(default=None, gt=0)
    #: resolution of the range query that fills the gap since the last poll
    step: float | None = Field(default=None, gt=0)
    #: seeds' families: system, application, saturation, business
    category: str = "application"
    #: labels added to every result series (never overriding the result's own)
    labels: dict[str, str] = Field(default_factory=dict)


def _default_prom_queries() -> list[PromQuerySettings]:
    q = PromQuerySettings
    by_pod = "namespace, pod"
    ctr = 'container!="",container!="POD"'
    return [
        # system (seed 002: cpu, memory, disk, network)
        q(name="cpu_usage_cores", category="system",
          expr=f"sum by ({by_pod}) (rate(container_cpu_usage_seconds_total{{{ctr}}}[5m]))"),
        q(name="memory_working_set_bytes", category="system",
          expr=f"sum by ({by_pod}) (container_memory_working_set_bytes{{{ctr}}})"),
        q(name="disk_used_ratio", category="system",
          expr='1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"}'
               ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs"}'),
        q(name="network_bytes_per_second", category="system",
          expr=f"sum by ({by_pod}) (rate(container_network_receive_bytes_total[5m])"
               " + rate(container_network_transmit_bytes_total[5m]))"),
        # application (response time percentiles, error rate, throughput, availability)
        *[q(name=f"http_latency_p{p}_seconds", category="application",
            expr=f"histogram_quantile(0.{p}, sum by (service, le) "
                 "(rate(http_request_duration_seconds_bucket[5m])))")
          for p in ("50", "95", "99")],
        q(name="http_error_ratio", category="application",
          expr='sum by (service) (rate(http_requests_total{status=~"5.."}[5m]))'
               " / sum by (service) (rate(http_requests_total[5m]))"),
        q(name="http_requests_per_second", category="application",
          expr="sum by (service) (rate(http_requests_total[5m]))"),
        q(name="up_ratio", category="application", expr="avg by (job) (up)"),
        # saturation
        q(name="cpu_throttled_ratio", category="saturation",
          expr=f"sum by ({by_pod}) (rate(container_cpu_cfs_throttled_periods_total[5m]))"
               f" / sum by ({by_pod}) (rate(container_cpu_cfs_periods_total[5m]))"),
        q(name="memory_limit_ratio", category="saturation",
          expr=f"sum by ({by_pod}) (container_memory_working_set_bytes{{{ctr}}})"
               f' / sum by ({by_pod}) (kube_pod_container_resource_limits{{resource="memory"}})'),
        # business (seed 002: users, transaction volume, revenue, conversion)
        q(name="orders_per_second", category="business",
          expr="sum by (service) (rate(orders_total[5m]))"),
        q(name="trade_volume_per_second", category="business",
          expr="sum by (service) (rate(trade_volume_total[5m]))"),
        q(name="active_users", category="business", expr="sum by (service) (active_users)"),
    ]


class PrometheusCollectorSettings(_Section):
    """Poll a Prometheus-compatible API (Prometheus, Mimir, Thanos)."""

    enabled: bool = False
    url: str = "http://prometheus:9090"
    interval: float = Field(default=60.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)
    #: extra request headers, e.g. ``{"X-Scope-OrgID": "tenant"}`` for Mimir
    headers: dict[str, str] = Field(default_factory=dict)
    #: after an outage, fill at most this many seconds back
    max_catchup: float = Field(default=3600.0, gt=0)
    queries: list[PromQuerySettings] = Field(default_factory=_default_prom_queries)
    #: optional YAML file holding a list of queries (replaces ``queries``; Helm mounts it)
    queries_file: Path | None = None
    bearer_token: SecretStr | None = None


class LokiQuerySettings(_Section):
    name: str = Field(min_length=1, max_length=128)
    expr: str = Field(min_length=1)
    interval: float | None = Field(default=None, gt=0)
    #: stream labels tried in order for the record's service
    service_labels: list[str] = Field(default_factory=lambda: ["service", "app", "job", "container"])
    level: str = "error"


class LokiCollectorSettings(_Section):
    """LogQL ``query_range`` for error lines per service."""

    enabled: bool = False
    url: str = "http://loki:3100"
    interval: float = Field(default=60.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    #: lines per request (Loki's ``limit``); more are fetched page by page
    limit: int = Field(default=1000, ge=1, le=5000)
    max_pages: int = Field(default=10, ge=1)
    max_catchup: float = Field(default=3600.0, gt=0)
    #: read lines older than this many seconds (ingestion lag of the Loki pipeline)
    delay: float = Field(default=5.0, ge=0)
    queries: list[LokiQuerySettings] = Field(default_factory=lambda: [
        LokiQuerySettings(
            name="errors",
            expr='{namespace=~".+"} |~ "(?i)(error|exception|fatal|panic)"',
        ),
    ])
    bearer_token: SecretStr | None = None


class CloudWatchMetricSettings(_Section):
    namespace: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    stat: str = "Average"
    #: fixed dimensions; without them every dimension set found by ListMetrics is read
    dimensions: dict[str, str] | None = None


def _default_cw_metrics() -> list[CloudWatchMetricSettings]:
    m = CloudWatchMetricSettings
    spec = {
        "AWS/EC2": [("CPUUtilization", "Average"), ("NetworkIn", "Sum"), ("NetworkOut", "Sum"),
                    ("StatusCheckFailed", "Maximum")],
        "AWS/RDS": [("CPUUtilization", "Average"), ("DatabaseConnections", "Average"),
                    ("FreeableMemory", "Average"), ("ReadIOPS", "Average"),
                    ("WriteIOPS", "Average"), ("ReadLatency", "Average"),
                    ("WriteLatency", "Average"), ("FreeStorageSpace", "Minimum")],
        "AWS/ApplicationELB": [("RequestCount", "Sum"), ("TargetResponseTime", "Average"),
                               ("HTTPCode_Target_5XX_Count", "Sum"),
                               ("HTTPCode_ELB_5XX_Count", "Sum"), ("UnHealthyHostCount", "Maximum")],
        "AWS/ELB": [("RequestCount", "Sum"), ("Latency", "Average"),
                    ("HTTPCode_Backend_5XX", "Sum"), ("UnHealthyHostCount", "Maximum")],
        "AWS/ElastiCache": [("CPUUtilization", "Average"), ("EngineCPUUtilization", "Average"),
                            ("CurrConnections", "Average"), ("Evictions", "Sum"),
                            ("DatabaseMemoryUsagePercentage", "Average")],
    }
    return [m(namespace=ns, metric=name, stat=stat) for ns, items in spec.items()
            for name, stat in items]


class CloudWatchCollectorSettings(_Section):
    """GetMetricData for EC2, RDS, ELB and ElastiCache (credentials: the ``aws`` section)."""

    enabled: bool = False
    interval: float = Field(default=60.0, gt=0)
    #: CloudWatch period in seconds (60 for detailed monitoring, 300 for basic)
    period: int = Field(default=60, ge=1)
    #: CloudWatch publishes late: read periods that ended at least this long ago
    delay: float = Field(default=120.0, ge=0)
    max_catchup: float = Field(default=3600.0, gt=0)
    #: namespaces to read among ``metrics``
    namespaces: list[str] = Field(default_factory=lambda: [
        "AWS/EC2", "AWS/RDS", "AWS/ApplicationELB", "AWS/ELB", "AWS/ElastiCache"])
    metrics: list[CloudWatchMetricSettings] = Field(default_factory=_default_cw_metrics)
    #: how long a ListMetrics discovery of dimension sets is reused (seconds)
    discovery_ttl: float = Field(default=900.0, gt=0)


class RemoteWriteSettings(_Section):
    """The Prometheus remote-write receiver (``POST /api/v1/write``)."""

    enabled: bool = True
    #: largest accepted payload after snappy decompression
    max_decompressed_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: most series / samples one request may carry (Prometheus sends <= 2,000 samples)
    max_series_per_request: int = Field(default=100_000, ge=1)
    max_samples_per_request: int = Field(default=200_000, ge=1)
    #: seconds a request waits for the broker's acknowledgement before answering 503
    ack_timeout: float = Field(default=30.0, gt=0)


class CollectorSettings(_Section):
    prometheus: PrometheusCollectorSettings = PrometheusCollectorSettings()
    loki: LokiCollectorSettings = LokiCollectorSettings()
    cloudwatch: CloudWatchCollectorSettings = CloudWatchCollectorSettings()
    remote_write: RemoteWriteSettings = RemoteWriteSettings()
    #: number of series shards (the ``metrics`` key); spread over the topic's partitions
    shards: int = Field(default=64, ge=1, le=65536)
    #: exponential backoff after errors: delay = interval * factor**(failures-1), capped
    backoff_factor: float = Field(default=2.0, ge=1.0)
    backoff_max: float = Field(default=600.0, gt=0)
    #: largest ``metrics`` message (estimated JSON bytes) produced by a collector
    max_message_bytes: int = Field(default=512 * 1024, ge=4096)
    #: seconds samples wait for more of their shard before a ``metrics`` message goes out
    linger: float = Field(default=0.1, ge=0, le=5)
    #: a shard's message goes out at once with this many series
    max_series_per_message: int = Field(default=2000, ge=1, le=100_000)
    #: a shard's message with fewer series waits for more, up to max_linger seconds
    min_series_per_message: int = Field(default=100, ge=1)
    max_linger: float = Field(default=0.5, ge=0, le=10)
    #: samples held for coalescing at most (waiting + in flight); more -> 503 Retry-After
    max_buffered_samples: int = Field(default=200_000, ge=1000)
    #: seconds after which a series' labels are sent in full again (schema v2 refs)
    label_refresh: float = Field(default=300.0, gt=0)


class RcaSettings(_Section):
    """The stream RCA's evidence windows (the engine ``sre-agent rca offline`` runs).

    Every worker keeps the last ``reference_seconds + after_seconds`` (plus a
    margin) of every service's metrics (one point per ``bucket_seconds``) and
    log lines, read by a group-less consumer from ``logs`` and from
    ``rca-windows``, where the detection stages publish bucket partials of the
    samples they decoded.
    """

    #: buffer metric/log windows and rank services with the engine (else: signals only)
    windows: bool = True
    #: history before the incident start used as the reference
    reference_seconds: float = Field(default=3600.0, gt=0)
    #: time after the start that is judged; the RCA is refined once it has passed
    after_seconds: float = Field(default=300.0, gt=0)
    #: event time after the incident's first signal the first RCA waits for (the other
    #: signals of that moment; bounded by as many wall seconds); 0 = analyse at once
    first_seconds: float = Field(default=60.0, ge=0, le=600)
    bucket_seconds: float = Field(default=60.0, gt=0)
    max_series: int = Field(default=20_000, ge=1)
    max_log_lines: int = Field(default=100_000, ge=0)
    #: how often (seconds) the detection stage publishes its bucket partials to
    #: ``rca-windows``: the windows lag the samples by about this much
    flush_seconds: float = Field(default=1.0, gt=0, le=60)
    #: how often pending incidents are checked for a refined RCA (seconds)
    refine_interval: float = Field(default=2.0, gt=0)


class Settings(_Section):
    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    postgres: PostgresSettings = PostgresSettings()
    anomaly_detection: AnomalySettings = AnomalySettings()
    slack: SlackSettings = SlackSettings()
    anthropic: AnthropicSettings = AnthropicSettings()
    qdrant: QdrantSettings = QdrantSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    aws: AwsSettings = AwsSettings()
    actions: ActionSettings = ActionSettings()
    api: ApiSettings = ApiSettings()
    notify: NotifySettings = NotifySettings()
    tickets: TicketSettings = TicketSettings()
    collectors: CollectorSettings = CollectorSettings()
    correlation: CorrelationSettings = CorrelationSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    prediction: PredictionSettings = PredictionSettings()
    log_patterns: LogPatternSettings = LogPatternSettings()
    security: SecuritySettings = SecuritySettings()
    severity: SeveritySettings = SeveritySettings()
    rca: RcaSettings = RcaSettings()

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.kafka.topic_prefix}{name}"


#: fields that may only come from the environment (secrets)
_ENV_ONLY = {
    ("postgres", "dsn"),
    ("slack", "bot_token"),
    ("slack", "signing_secret"),
    ("anthropic", "api_key"),
    ("qdrant", "api_key"),
    ("kubernetes", "token"),
    ("aws", "access_key_id"),
    ("aws", "secret_access_key"),
    ("api", "tokens"),
    ("api", "webhook_token"),
    ("notify", "wecom_webhook_url"),
    ("notify", "pagerduty_routing_key"),
    ("notify", "secrets"),
    ("tickets", "jira_token"),
    ("kafka", "sasl_password"),
    ("security", "signing_key"),
}

#: deeper secrets (section, subsection, field): env only too
_ENV_ONLY_NESTED = {
    ("collectors", "prometheus", "bearer_token"),
    ("collectors", "loki", "bearer_token"),
}


def _env_tree(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``SRE_AGENT_A__B=v`` variables into ``{"a": {"b": v}}``.

    Values that look like JSON/YAML collections (``[..]`` or ``{..}``) are parsed.
    """
    tree: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"invalid configuration: {key}: not valid JSON/YAML: {exc}") from exc
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"invalid configuration: {key}: conflicts with another variable")
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _format(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from a YAML file, the environment and overrides.

    Parameters
    ----------
    config_file
        Optional YAML file; falls back to ``SRE_AGENT_CONFIG`` in ``env``.
    env
        The environment mapping (the entry point passes ``os.environ``).
    overrides
        Nested values that win over everything (used by tests and the CLI).
    """
    env = dict(env or {})
    data: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"invalid configuration: cannot read {p}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid configuration: {p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"invalid configuration: {p} must hold a mapping at top level")
        for section, field in sorted(_ENV_ONLY):
            sec = loaded.get(section)
            if isinstance(sec, dict) and sec.get(field) is not None:
                var = f"{ENV_PREFIX}{section.upper()}__{field.upper()}"
                raise ConfigError(
                    f"invalid configuration: {section}.{field} is a secret and must come from "
                    f"the environment ({var}), not from {p}"
                )
        for path3 in sorted(_ENV_ONLY_NESTED):
            node: Any = loaded
            for part in path3:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                var = ENV_PREFIX + "__".join(part.upper() for part in path3)
                raise ConfigError(
                    f"invalid configuration: {'.'.join(path3)} is a secret and must come from "
                    f"the environment ({var}), not from {p}"
                )
        data = loaded
    data = _merge(data, _env_tree(env))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None
