"""Task of create-instance: a Wazi aaS server from a custom image and its data snapshot.

What a failed run created is deleted again; what a successful one created is the product and kept.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.ibmcloud import IbmCloud, create_instance_from_prototype
from infra.vpc import Resource, VpcError


class InstanceSetupError(RuntimeError):
    pass


def _lookup(cloud: IbmCloud, kind: str, ref: str, what: str) -> dict[str, Any]:
    """A resource by name, or by id when no name matches."""
    found = cloud.vpc.find(kind, ref)
    if found is None:
        try:
            return cloud.vpc.get(Resource(kind=kind, id=ref, name=ref))
        except VpcError as exc:
            if exc.status != 404:
                raise
            raise InstanceSetupError(f"{what} {ref!r} was not found (by name or id) in {cloud.target.region}") from None
    return cloud.vpc.get(found)


def _ready(cloud: IbmCloud, res: dict[str, Any], kind: str, field: str, want: str, what: str) -> None:
    if res.get(field) != want:
        raise InstanceSetupError(f"{what} {res['name']} is {res.get(field)}, not {want}: has its deploy finished?")


def _prototype(
    cloud: IbmCloud,
    name: str,
    image: dict[str, Any],
    snapshot: dict[str, Any],
    subnet: dict[str, Any],
    key: dict[str, Any],
    profile: str,
    reserved_ip: str | None,
    data_volume_profile: str,
    security_group: dict[str, Any] | None,
) -> dict[str, Any]:
    crk = cloud.target.encryption_key_crn
    encryption = {"encryption_key": {"crn": crk}} if crk else {}
    nic: dict[str, Any] = {"name": "eth0", "subnet": {"id": subnet["id"]}}
    if reserved_ip:
        try:
            ipaddress.IPv4Address(reserved_ip)
            nic["primary_ip"] = {"address": reserved_ip, "auto_delete": False, "name": f"{name}-ip"}
        except ValueError:
            nic["primary_ip"] = {"id": reserved_ip}  # an existing reserved IP, by id
    if security_group:
        nic["security_groups"] = [{"id": security_group["id"]}]
    proto: dict[str, Any] = {
        "name": name,
        "zone": {"name": subnet["zone"]["name"]},
        "image": {"id": image["id"]},
        "profile": {"name": profile},
        "keys": [{"id": key["id"]}],
        "primary_network_interface": nic,
        "boot_volume_attachment": {
            "volume": {"name": f"{name}-boot", "profile": {"name": "general-purpose"}, **encryption},
            "delete_volume_on_instance_delete": True,
        },
        "volume_attachments": [{
            "name": "zvolumes",
            "volume": {
                "name": f"{name}-data",
                "profile": {"name": data_volume_profile},
                "source_snapshot": {"id": snapshot["id"]},
                "capacity": int(snapshot.get("minimum_capacity") or snapshot["size"]),
                **encryption,
            },
            # the restored volumes are the server's disks: kept if the server is deleted
            "delete_volume_on_instance_delete": False,
        }],
    }
    if cloud.resource_group_id:
        proto["resource_group"] = {"id": cloud.resource_group_id}
    return proto


def _undo(cloud: IbmCloud, name: str) -> list[str]:
    """Delete what a failed run made: the instance, then its restored data volume."""
    removed = []
    timing = cloud.timing
    for kind, res_name in (("instances", name), ("volumes", f"{name}-data")):
        try:
            found = cloud.vpc.find(kind, res_name)
            if found and cloud.vpc.delete(found, timeout=timing.delete_timeout, poll=timing.poll):
                removed.append(str(found))
        except VpcError as exc:
            get_run_logger().error("could not delete %s %s after the failure: %s", kind, res_name, exc)
    return removed


# API retries are the adapter's
@task(name="create-wazi-instance", task_run_name="create-wazi-instance-{name}", cache_policy=NO_CACHE)
def create_wazi_instance(
    cloud: IbmCloud,
    name: str,
    image: str,
    subnet: str,
    ssh_key: str,
    profile: str,
    reserved_ip: str | None,
    security_group: str | None,
    data_volume_profile: str,
) -> dict[str, Any]:
    """Look everything up first (nothing is created when something is missing), then create the
    server and wait until it runs."""
    timing = cloud.timing
    started = time.monotonic()
    custom = _lookup(cloud, "images", image, "custom image")
    _ready(cloud, custom, "images", "status", "available", "custom image")
    snap = _lookup(cloud, "snapshots", f"{image}-data", "snapshot")
    _ready(cloud, snap, "snapshots", "lifecycle_state", "stable", "snapshot")
    net = _lookup(cloud, "subnets", subnet, "subnet")
    key = _lookup(cloud, "keys", ssh_key, "SSH key")
    sg = _lookup(cloud, "security_groups", security_group, "security group") if security_group else None
    if cloud.vpc.find("instances", name) is not None:
        raise InstanceSetupError(f"an instance named {name!r} already exists; choose another name")
    proto = _prototype(cloud, name, custom, snap, net, key, profile, reserved_ip, data_volume_profile, sg)
    try:
        inst = create_instance_from_prototype(cloud.vpc, name, proto)
        ready = cloud.vpc.wait_ready(inst, timeout=timing.ready_timeout, poll=timing.poll)
    except (VpcError, InstanceSetupError) as exc:
        removed = _undo(cloud, name)
        raise InstanceSetupError(
            f"creating instance {name} failed: {exc}" + (f"; deleted again: {', '.join(removed)}" if removed else "")
        ) from exc
    address = ready["primary_network_interface"]["primary_ip"]["address"]
    data = next((a for a in ready.get("volume_attachments", []) if a.get("name") == "zvolumes"), None)
    summary = {
        "instance": {"id": inst.id, "name": name, "crn": inst.crn, "profile": profile, "address": address},
        "image": {"id": custom["id"], "name": image},
        "snapshot": {"id": snap["id"], "name": snap["name"]},
        "data_volume": data["volume"]["name"] if data else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    return {"summary": summary, "key_name": key["name"], "snapshot_name": snap["name"]}
