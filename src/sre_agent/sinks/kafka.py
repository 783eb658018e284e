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

from ..config import ConfigError, KafkaSettings

__all__ = ["bootstrap_servers", "client_kwargs", "faust_credentials", "ssl_context"]


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
