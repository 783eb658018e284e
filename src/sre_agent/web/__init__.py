"""The HTTP surface on Faust's web server: REST API, webhooks, Slack, console.

Every route is declared here, in one place, by :func:`register`:

==============================  =========================================  ==================
module                          routes                                     credentials
==============================  =========================================  ==================
:mod:`.status`                  ``/status``, ``/api/baselines``            none / viewer
:mod:`.probes`                  ``/livez``, ``/readyz`` (Kubernetes)       none
:mod:`.api`                     ``/metrics``, ``/openapi.json``            none
:mod:`.views`                   ``/api/*`` read side, feedback, audit      viewer / operator
:mod:`.triage`                  ``/api/incidents/{id}/{act}``, silences,   viewer / operator
                                runbooks
:mod:`.patterns`                ``/api/patterns/{detect,learn}``           viewer / operator
:mod:`.approvals`               ``/api/approvals/*``, ``/slack/interactions``  approver / Slack
:mod:`.chatops`                 ``/slack/commands``                        Slack signature
:mod:`.webhooks`                ``/webhooks/{argocd,alertmanager,n9e}``    webhook token
:mod:`.console`                 ``/``, ``/console``, ``/console/static/*``  none (static)
==============================  =========================================  ==================

Submodules are imported by :func:`register`, not at package import, so stages
may import helpers from here without an import cycle through ``streams``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..streams.context import StreamContext

__all__ = ["register"]


def register(ctx: StreamContext) -> None:
    """Declare every view on ``ctx.app`` (before the app starts)."""
    from . import api, approvals, probes, status, webhooks

    probes.register(ctx)  # /livez, /readyz

    read_side = api.register(ctx)
    status.register(read_side)
    webhooks.register(read_side)
    approvals.register(read_side)
