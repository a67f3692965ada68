"""Task of create-instance: a Wazi aaS server from a custom image and its data snapshot.

Every name the run will create (the server, its boot and data volumes, a new reserved IP) is
checked to be free first, so a conflict creates nothing. What a failed run created is deleted
again, by the ids the create answered with - never by name, which could be an older server's
kept data volume; what a successful one created is the product and kept.
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
    made = _new_names(name, reserved_ip)
    nic: dict[str, Any] = {"name": "eth0", "subnet": {"id": subnet["id"]}}
    if "reserved IP" in made:
        nic["primary_ip"] = {"address": reserved_ip, "auto_delete": False, "name": made["reserved IP"]}
    elif reserved_ip:
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
            "volume": {"name": made["boot volume"], "profile": {"name": "general-purpose"}, **encryption},
            "delete_volume_on_instance_delete": True,
        },
        "volume_attachments": [{
            "name": "zvolumes",
            "volume": {
                "name": made["data volume"],
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


def _new_names(name: str, reserved_ip: str | None) -> dict[str, str]:
    """What the run creates, by kind: the names `_prototype` gives."""
    made = {"instance": name, "boot volume": f"{name}-boot", "data volume": f"{name}-data"}
    if reserved_ip and _is_address(reserved_ip):
        made["reserved IP"] = f"{name}-ip"
    return made


def _is_address(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _check_names_free(cloud: IbmCloud, name: str, reserved_ip: str | None, subnet: dict[str, Any]) -> None:
    vpc = cloud.vpc
    taken = []
    for what, res_name in _new_names(name, reserved_ip).items():
        if what == "reserved IP":
            found = vpc.find_reserved_ip(subnet["id"], res_name)
        else:
            found = vpc.find("instances" if what == "instance" else "volumes", res_name)
        if found is not None:
            taken.append(f"a {what} named {res_name!r} ({found.id if isinstance(found, Resource) else found['id']})")
    if taken:
        raise InstanceSetupError(
            f"{', '.join(taken)} already exist(s); nothing was created. A data volume kept from an earlier server "
            "of this name holds that server's data: delete or rename it yourself, or choose another name"
        )


def _undo(cloud: IbmCloud, made: dict[str, Any] | None, reserved_ip: str | None) -> tuple[list[str], list[str]]:
    """Delete what a failed run made, by the ids the create answered with: the instance (its boot
    volume goes with it), its restored data volume, and a reserved IP it made. (removed, failures)."""
    if made is None:
        return [], []
    removed, failures = [], []
    vpc, timing = cloud.vpc, cloud.timing
    inst = Resource(kind="instances", id=made["id"], name=made.get("name", ""))
    data = [a["volume"] for a in made.get("volume_attachments", []) if a.get("name") == "zvolumes"]
    nic = made.get("primary_network_interface") or {}
    ip = nic.get("primary_ip") or {}
    steps: list[tuple[str, Any]] = [
        (str(inst), lambda: vpc.delete(inst, timeout=timing.delete_timeout, poll=timing.poll)),
    ]
    for vol in data:
        res = Resource(kind="volumes", id=vol["id"], name=vol.get("name", ""))
        steps.append((str(res), lambda r=res: vpc.delete(r, timeout=timing.delete_timeout, poll=timing.poll)))
    if reserved_ip and _is_address(reserved_ip) and ip.get("id"):  # made by this run (an id given is the user's)
        subnet_id, ip_id = nic["subnet"]["id"], ip["id"]
        steps.append((f"reserved IP {ip.get('name')} ({ip_id})", lambda: vpc.delete_reserved_ip(subnet_id, ip_id)))
    for what, step in steps:
        try:
            if step():
                removed.append(what)
        except VpcError as exc:  # every step is tried; the error names what is left
            get_run_logger().error("could not delete %s after the failure: %s", what, exc)
            failures.append(f"{what}: {exc}")
    return removed, failures


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
    _check_names_free(cloud, name, reserved_ip, net)
    proto = _prototype(cloud, name, custom, snap, net, key, profile, reserved_ip, data_volume_profile, sg)
    made: dict[str, Any] | None = None
    try:
        inst = create_instance_from_prototype(cloud.vpc, name, proto)
        made = {"id": inst.id, "name": inst.name}
        made = cloud.vpc.get(inst)  # the ids of what the create made: the undo deletes these only
        ready = cloud.vpc.wait_ready(inst, timeout=timing.ready_timeout, poll=timing.poll)
    except (VpcError, InstanceSetupError) as exc:
        removed, failures = _undo(cloud, made, reserved_ip)
        unknown = made is None and not (isinstance(exc, VpcError) and exc.status is not None and exc.status < 500)
        raise InstanceSetupError(
            f"creating instance {name} failed: {exc}"
            + (f"; deleted again: {', '.join(removed)}" if removed else "")
            + (f"; NOT deleted: {'; '.join(failures)}" if failures else "")
            + (f"; the create's outcome is unknown: look for an instance named {name}" if unknown else "")
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
