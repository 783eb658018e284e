"""One front for the action back-ends: Kubernetes kinds go to kubernetes-asyncio,
``ec2``/``rds`` to aiobotocore, or both to a simulated cluster (``kubernetes.simulator_url``,
:mod:`.simcluster`). Each back-end exists only when enabled in settings; clients are
created on first use (``setup``) and closed once at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..config import Settings
from ..schemas import ActionStep
from .aws import AwsActions
from .kubernetes import KubeActions

__all__ = ["ActionTargets", "BackendMissing"]

log = logging.getLogger(__name__)

AWS_KINDS = frozenset({"ec2", "rds"})


class BackendMissing(RuntimeError):
    """No back-end is configured for this target kind."""


class ActionTargets:
    def __init__(self, kube: KubeActions | None, aws: AwsActions | None) -> None:
        self.kube = kube
        self.aws = aws
        self._ready: set[str] = set()
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, s: Settings) -> ActionTargets:
        if s.kubernetes.simulator_url:
            from .simcluster import SimClusterActions

            sim = SimClusterActions(s.kubernetes.simulator_url)
            return cls(sim, sim)  # type: ignore[arg-type]
        kube = KubeActions(settings=s.kubernetes) if s.kubernetes.enabled else None
        aws = AwsActions(s.aws) if s.aws.enabled else None
        return cls(kube, aws)

    async def _backend(self, step: ActionStep) -> Any:
        name = "aws" if step.target.kind in AWS_KINDS else "kube"
        backend = self.aws if name == "aws" else self.kube
        if backend is None:
            raise BackendMissing(f"{'aws' if name == 'aws' else 'kubernetes'} is not enabled "
                                 f"for {step.target.ref()}")
        if name not in self._ready:
            async with self._lock:
                if name not in self._ready:
                    await backend.setup()
                    self._ready.add(name)
        return backend

    def available(self, step: ActionStep) -> bool:
        return (self.aws if step.target.kind in AWS_KINDS else self.kube) is not None

    async def observe(self, step: ActionStep) -> dict[str, Any]:
        return await (await self._backend(step)).observe(step)  # type: ignore[no-any-return]

    async def snapshot(self, step: ActionStep) -> dict[str, Any]:
        return await (await self._backend(step)).snapshot(step)  # type: ignore[no-any-return]

    async def act(self, step: ActionStep) -> str:
        return await (await self._backend(step)).act(step)  # type: ignore[no-any-return]

    async def restore(self, step: ActionStep, snapshot: dict[str, Any]) -> str:
        return await (await self._backend(step)).restore(step, snapshot)  # type: ignore[no-any-return]

    async def close(self) -> None:
        for b in (self.kube, self.aws):
            if b is not None:
                try:
                    await b.close()
                except Exception as exc:  # pragma: no cover - best effort at shutdown
                    log.warning("closing %s failed: %s", type(b).__name__, exc)
        self._ready.clear()
