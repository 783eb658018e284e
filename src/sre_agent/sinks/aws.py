"""AWS actions with aiobotocore: EC2 reboot and RDS failover.

``endpoint_url`` and credentials come from settings (tests point them at moto's
server mode). Targets: ``ec2/<instance-id>`` and ``rds/<cluster-or-instance-id>``.

* ``reboot_instance`` — ``RebootInstances``;
* ``rds_failover`` — ``FailoverDBCluster`` (Aurora, ``params.cluster`` true, the
  default) or ``RebootDBInstance(ForceFailover=True)`` for a Multi-AZ instance.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ..config import AwsSettings
from ..schemas import ActionStep

__all__ = ["AwsActions", "AwsError"]

log = logging.getLogger(__name__)

_MISSING = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "DBClusterNotFoundFault",
            "DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFound"}


class AwsError(RuntimeError):
    """An AWS call failed."""


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != "ResponseMetadata"}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


class AwsActions:
    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._stack: AsyncExitStack | None = None
        self.ec2: Any = None
        self.rds: Any = None

    async def setup(self) -> None:
        if self._stack is not None:
            return
        s = self.settings
        kw: dict[str, Any] = {"region_name": s.region}
        if s.endpoint_url:
            kw["endpoint_url"] = s.endpoint_url
        if s.access_key_id is not None and s.secret_access_key is not None:
            kw["aws_access_key_id"] = s.access_key_id.get_secret_value()
            kw["aws_secret_access_key"] = s.secret_access_key.get_secret_value()
        stack = AsyncExitStack()
        session = get_session()
        self.ec2 = await stack.enter_async_context(session.create_client("ec2", **kw))
        self.rds = await stack.enter_async_context(session.create_client("rds", **kw))
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def _describe(self, step: ActionStep) -> dict[str, Any] | None:
        name = step.target.name
        try:
            if step.target.kind == "ec2":
                out = await self.ec2.describe_instances(InstanceIds=[name])
                found = [i for r in out.get("Reservations", []) for i in r.get("Instances", [])]
                return _plain(found[0]) if found else None
            if step.target.kind == "rds":
                if step.params.get("cluster", True):
                    out = await self.rds.describe_db_clusters(DBClusterIdentifier=name)
                    items = out.get("DBClusters", [])
                else:
                    out = await self.rds.describe_db_instances(DBInstanceIdentifier=name)
                    items = out.get("DBInstances", [])
                return _plain(items[0]) if items else None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise AwsError(f"describe {step.target.ref()}: {exc}") from None
        except BotoCoreError as exc:
            raise AwsError(f"describe {step.target.ref()}: {exc}") from None
        raise AwsError(f"{step.target.kind} is not an AWS target")

    async def observe(self, step: ActionStep) -> dict[str, Any]:
        obj = await self._describe(step)
        if obj is None:
            return {"exists": False}
        if step.target.kind == "ec2":
            return {"exists": True, "uid": obj.get("InstanceId"),
                    "state": (obj.get("State") or {}).get("Name")}
        return {"exists": True, "uid": obj.get("DbClusterResourceId") or obj.get("DbiResourceId"),
                "state": obj.get("Status"),
                "members": [m.get("DBInstanceIdentifier") for m in obj.get("DBClusterMembers", [])]}

    async def snapshot(self, step: ActionStep) -> dict[str, Any]:
        obj = await self._describe(step)
        return {"kind": step.target.kind, "object": obj} if obj else {}

    async def act(self, step: ActionStep) -> str:
        name, p = step.target.name, step.params
        try:
            if step.action == "reboot_instance":
                await self.ec2.reboot_instances(InstanceIds=[name])
                return f"rebooted EC2 instance {name}"
            if step.action == "rds_failover":
                if p.get("cluster", True):
                    kw = {"DBClusterIdentifier": name}
                    if p.get("target_instance"):
                        kw["TargetDBInstanceIdentifier"] = p["target_instance"]
                    out = await self.rds.failover_db_cluster(**kw)
                    members = (out.get("DBCluster") or {}).get("DBClusterMembers", [])
                    writer = next((m.get("DBInstanceIdentifier") for m in members
                                   if m.get("IsClusterWriter")), None)
                    return f"failed over RDS cluster {name} (writer now {writer})"
                await self.rds.reboot_db_instance(DBInstanceIdentifier=name, ForceFailover=True)
                return f"rebooted RDS instance {name} with failover"
        except (ClientError, BotoCoreError) as exc:
            raise AwsError(f"{step.action} {step.target.ref()}: {exc}") from None
        raise AwsError(f"{step.action} is not an AWS action")

    async def restore(self, step: ActionStep, snapshot: dict[str, Any]) -> str:
        return "nothing to restore (reboots and failovers are not reversed automatically)"
