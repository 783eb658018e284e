"""How every Kafka client connects: bootstrap servers, TLS and SASL/SCRAM.

One place turns :class:`~sre_agent.config.KafkaSettings` into the keyword
arguments of aiokafka clients (:func:`client_kwargs`) and into Faust's
``broker_credentials`` (:func:`faust_credentials`), so the worker, the read
model, the audit check and the CLI publishers all connect the same way.

Examples
--------
>>> from sre_agent.config import load_settings
>>> s = load_settings(env={"SRE_AGENT_KAFKA__BROKER": "kafka://k1:9093;kafka://k2:9093",
...                        "SRE_AGENT_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
...                        "SRE_AGENT_KAFKA__SASL_USERNAME": "sre-agent",
...                        "SRE_AGENT_KAFKA__SASL_PASSWORD": "pw"})
>>> kw = client_kwargs(s.kafka)
>>> kw["bootstrap_servers"], kw["security_protocol"], kw["sasl_mechanism"]
('k1:9093,k2:9093', 'SASL_PLAINTEXT', 'SCRAM-SHA-512')
>>> faust_credentials(s.kafka).mechanism.value
'SCRAM-SHA-512'
>>> faust_credentials(load_settings(env={}).kafka) is None
True
"""

from __future__ import annotations

import ssl
from typing import Any

from ..config import ConfigError, KafkaSettings, Settings

__all__ = ["DECISION_TOPICS", "INPUT_TOPICS", "acl_recipe", "bootstrap_servers",
           "client_kwargs", "faust_credentials", "ssl_context"]

#: topics external producers (Fluent Bit, Vector, CI hooks) may write to
INPUT_TOPICS = ("metrics", "logs", "k8s-events", "deploy-events", "alerts")
#: topics only the agent may write to: whoever writes them decides what is executed
DECISION_TOPICS = ("action-plans", "approvals", "sre-actions", "action-results")


def bootstrap_servers(broker_url: str) -> str:
    """``kafka://h1:9092;kafka://h2:9092`` -> ``h1:9092,h2:9092``."""
    parts = [p.strip() for p in broker_url.replace(",", ";").split(";") if p.strip()]
    return ",".join(p.split("://", 1)[-1] for p in parts)


def ssl_context(k: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for ``SSL``/``SASL_SSL`` (None for plaintext protocols)."""
    if k.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                     cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
    if k.ssl_certfile is not None:
        ctx.load_cert_chain(str(k.ssl_certfile), str(k.ssl_keyfile) if k.ssl_keyfile else None)
    ctx.check_hostname = k.ssl_check_hostname
    return ctx


def _sasl(k: KafkaSettings) -> tuple[str, str]:
    if not k.sasl_username or k.sasl_password is None:
        raise ConfigError(f"invalid configuration: kafka.security_protocol={k.security_protocol} "
                          "needs kafka.sasl_username and SRE_AGENT_KAFKA__SASL_PASSWORD")
    return k.sasl_username, k.sasl_password.get_secret_value()


def client_kwargs(k: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``/``Consumer``/``AdminClient``."""
    kw: dict[str, Any] = {"bootstrap_servers": bootstrap_servers(k.broker),
                          "security_protocol": k.security_protocol}
    ctx = ssl_context(k)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if k.security_protocol.startswith("SASL"):
        user, password = _sasl(k)
        kw.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=user,
                  sasl_plain_password=password)
    return kw


def faust_credentials(k: KafkaSettings) -> Any:
    """``broker_credentials`` for the Faust app (None: plaintext)."""
    import faust

    if k.security_protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(k)
    if k.security_protocol == "SSL":
        return faust.SSLCredentials(ctx)
    user, password = _sasl(k)
    return faust.SASLCredentials(username=user, password=password, ssl_context=ctx,
                                 mechanism=k.sasl_mechanism)


def acl_recipe(settings: Settings, agent: str, ingest: str | None = None,
               reader: str | None = None, reader_group: str | None = None) -> list[list[str]]:
    """``kafka-acls`` argument lists that keep outsiders off the decision topics.

    With ``allow.everyone.if.no.acl.found=false`` on the brokers (the default of
    the StandardAuthorizer), nothing is allowed that is not listed here:

    * ``agent`` (the workers' SASL user): everything on its topics (the topic
      prefix; with no prefix, each topic by name), its Faust internal topics
      (``<app id>-...``) and its consumer group (``<app id>``);
    * ``ingest`` (optional): write to the input topics only;
    * ``reader`` (optional): read ``sre-actions`` and ``action-results`` (external
      executors, audit tools) in the group ``reader_group`` (default the user name).

    No other principal gets ``Write`` on a decision topic.

    >>> from sre_agent.config import load_settings
    >>> s = load_settings(env={"SRE_AGENT_KAFKA__TOPIC_PREFIX": "prod.",
    ...                        "SRE_AGENT_WORKER__APP_ID": "sre-agent"})
    >>> for args in acl_recipe(s, "sre-agent", ingest="fluent-bit"):
    ...     print(" ".join(args))  # doctest: +NORMALIZE_WHITESPACE
    --add --allow-principal User:sre-agent --operation All --resource-pattern-type prefixed
      --topic prod. --topic sre-agent- --group sre-agent
    --add --allow-principal User:fluent-bit --operation Write --operation Describe
      --topic prod.metrics --topic prod.logs --topic prod.k8s-events --topic prod.deploy-events
      --topic prod.alerts
    """
    from ..schemas import TOPIC_MODELS

    prefix, app_id = settings.kafka.topic_prefix, settings.worker.app_id
    out: list[list[str]] = []
    if prefix:
        out.append(["--add", "--allow-principal", f"User:{agent}", "--operation", "All",
                    "--resource-pattern-type", "prefixed", "--topic", prefix,
                    "--topic", f"{app_id}-", "--group", app_id])
    else:
        topics = [t for name in TOPIC_MODELS for t in (name, f"{name}.dlq")]
        out.append(["--add", "--allow-principal", f"User:{agent}", "--operation", "All",
                    *[a for t in topics for a in ("--topic", t)]])
        out.append(["--add", "--allow-principal", f"User:{agent}", "--operation", "All",
                    "--resource-pattern-type", "prefixed", "--topic", f"{app_id}-",
                    "--group", app_id])
    if ingest:
        out.append(["--add", "--allow-principal", f"User:{ingest}", "--operation", "Write",
                    "--operation", "Describe",
                    *[a for t in INPUT_TOPICS for a in ("--topic", settings.topic(t))]])
    if reader:
        out.append(["--add", "--allow-principal", f"User:{reader}", "--operation", "Read",
                    "--operation", "Describe", "--topic", settings.topic("sre-actions"),
                    "--topic", settings.topic("action-results"),
                    "--group", reader_group or reader])
    return out
