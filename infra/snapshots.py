"""Volumes made from snapshots: how an export reads a stopped server's data volume without touching it."""

from __future__ import annotations

import logging
from typing import Any

from infra.iam import call_api
from infra.vpc import Resource, Vpc, VpcError

log = logging.getLogger(__name__)


def volume_from_snapshot(
    vpc: Vpc,
    name: str,
    snapshot_id: str,
    capacity_gb: int,
    profile: str = "general-purpose",
    encryption_key_crn: str | None = None,
) -> Resource:
    """A new volume restored from a snapshot (at least the snapshot's size), tagged like every
    temporary volume; a lost answer followed by a name conflict returns the volume the lost attempt made."""
    proto: dict[str, Any] = {
        "name": name,
        "capacity": capacity_gb,
        "profile": {"name": profile},
        "zone": {"name": vpc.zone},
        "source_snapshot": {"id": snapshot_id},
        "user_tags": vpc.tags,
    }
    if encryption_key_crn:
        proto["encryption_key"] = {"crn": encryption_key_crn}
    if vpc.resource_group_id:
        proto["resource_group"] = {"id": vpc.resource_group_id}

    def existing() -> dict[str, Any] | None:
        found = vpc.find("volumes", name)
        return vpc.get(found) if found else None

    res = call_api(
        lambda: vpc.client.create_volume(proto),
        operation="create",
        resource=f"volume {name!r} from snapshot {snapshot_id}",
        retry=vpc.retry,
        error=VpcError,
        recover_conflict=existing,
    )
    created = Resource(
        kind="volumes", id=res["id"], name=res.get("name", name), crn=res.get("crn", ""), status=res.get("status")
    )
    log.info("created %s from snapshot %s (%d GB)", created, snapshot_id, capacity_gb)
    return created
