"""Inbound edges that are not HTTP: the Kubernetes events watch.

The webhooks (ArgoCD, Alertmanager, n9e) are views of :mod:`sre_agent.web.webhooks`.
With ``kubernetes.enabled`` the leader runs the Kubernetes watch (:mod:`.ingest_k8s`).
"""

from __future__ import annotations

from . import ingest_k8s
from .context import StreamContext

__all__ = ["register"]


def register(ctx: StreamContext) -> None:
    if ctx.settings.kubernetes.enabled:
        ingest_k8s.register(ctx)
