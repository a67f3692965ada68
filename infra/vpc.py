"""IBM Cloud VPC adapter: the mover's temporary resources and the build's products.

Creates return at once with a `Resource`; `wait_ready`/`wait_for` poll until a state is reached
(or fail naming the resource). Deletes wait until the API answers 404 and treat an initial 404 as
"already gone", so teardown and orphan reaping can run any number of times.

Tagging: the VPC API takes user tags on create only for some kinds (volumes, snapshots here);
other kinds would need the Global Tagging API. Every temporary resource is therefore named with
the build's prefix (`zimage-<build>-...`), which `list_by_prefix` uses to find orphans.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ibm_cloud_sdk_core import get_query_param
from ibm_vpc import VpcV1
from pydantic import BaseModel, ConfigDict

from infra.iam import DEFAULT_IAM_ENDPOINT, IbmCloudError, RetryPolicy, call_api, iam_authenticator
from infra.resource_controller import ResourceController

log = logging.getLogger(__name__)


class VpcError(IbmCloudError):
    """A VPC API call failed, or a resource failed or did not reach a state in time."""


class VpcTimeout(VpcError):
    pass


@dataclass(frozen=True)
class _Kind:
    singular: str  # SDK method suffix: get_<singular>, delete_<singular>
    status_field: str | None
    ready: str | None
    name_filter: bool  # whether list_<kind> takes name=


KINDS: dict[str, _Kind] = {
    "vpcs": _Kind("vpc", "status", "available", False),
    "subnets": _Kind("subnet", "status", "available", False),
    "security_groups": _Kind("security_group", None, None, False),
    "keys": _Kind("key", None, None, False),
    "volumes": _Kind("volume", "status", "available", True),
    "instances": _Kind("instance", "status", "running", True),
    "floating_ips": _Kind("floating_ip", "status", "available", False),
    "images": _Kind("image", "status", "available", True),
    "snapshots": _Kind("snapshot", "lifecycle_state", "stable", True),
}
# Dependents before what they depend on (DESIGN §10); images and snapshots are products, kept.
TEARDOWN_ORDER = ("floating_ips", "instances", "volumes", "subnets", "security_groups", "keys", "vpcs")
FAILED_STATES = frozenset({"failed"})


class Resource(BaseModel):
    """A VPC resource as the flows handle it: kind (API collection name), id and name."""

    model_config = ConfigDict(frozen=True)
    kind: str
    id: str
    name: str
    crn: str = ""
    status: str | None = None

    def __str__(self) -> str:
        return f"{KINDS[self.kind].singular.replace('_', ' ')} {self.name} ({self.id})"


@dataclass(frozen=True)
class ImageEncryption:
    """Key Protect / HPCS root key and the data key the qcow2 was encrypted with."""

    key_crn: str
    encrypted_data_key: str


def vpc_service_url(region: str, vpc_endpoint: str | None = None) -> str:
    return (vpc_endpoint or f"https://{region}.iaas.cloud.ibm.com/v1").rstrip("/")


def vpc_client(
    api_key: str,
    region: str,
    *,
    iam_endpoint: str = DEFAULT_IAM_ENDPOINT,
    vpc_endpoint: str | None = None,
    timeout: float = 60.0,
) -> VpcV1:
    """A VpcV1 client authenticated with an API key (the value, read by the caller)."""
    client = VpcV1(authenticator=iam_authenticator(api_key, iam_endpoint))
    client.set_service_url(vpc_service_url(region, vpc_endpoint))
    client.set_http_config({"timeout": timeout})
    return client


class Vpc:
    page_size = 100  # the API's maximum

    def __init__(
        self,
        client: VpcV1,
        *,
        zone: str,
        resource_group_id: str | None = None,
        tags: Sequence[str] = (),
        retry: RetryPolicy | None = None,
        poll_interval: float = 5.0,
        resource_controller: ResourceController | None = None,
    ) -> None:
        self.client = client
        self.zone = zone
        self.resource_group_id = resource_group_id
        self.tags = list(tags)
        self.retry = retry or RetryPolicy()
        self.poll_interval = poll_interval
        self.resource_controller = resource_controller

    # ---------------------------------------------------------------- plumbing
    def _call(self, fn: Any, operation: str, resource: str, **kwargs: Any) -> Any:
        return call_api(fn, operation=operation, resource=resource, retry=self.retry, error=VpcError, **kwargs)

    def _rg(self) -> dict[str, str] | None:
        return {"id": self.resource_group_id} if self.resource_group_id else None

    def _zone(self) -> dict[str, str]:
        return {"name": self.zone}

    def _resource(self, kind: str, res: Mapping[str, Any]) -> Resource:
        field = KINDS[kind].status_field
        return Resource(
            kind=kind,
            id=res["id"],
            name=res.get("name", ""),
            crn=res.get("crn", ""),
            status=res.get(field) if field else None,
        )

    def _create(self, kind: str, name: str, fn: Any) -> Resource:
        res = self._call(
            fn,
            "create",
            f"{KINDS[kind].singular.replace('_', ' ')} {name!r}",
            recover_conflict=lambda: self._find_raw(kind, name),
        )
        created = self._resource(kind, res)
        log.info("created %s", created)
        return created

    def _list(
        self, kind: str, *args: Any, key: str | None = None, what: str | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """Every item of a collection (`list_<kind>(*args)`), following `next` links."""
        method = getattr(self.client, f"list_{kind}")
        items: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            page = self._call(
                lambda s=start: method(*args, start=s, limit=self.page_size, **filters), "list", what or kind
            )
            items.extend(page.get(key or kind, []))
            nxt = (page.get("next") or {}).get("href")
            start = get_query_param(nxt, "start") if nxt else None
            if not start:
                return items

    def _find_raw(self, kind: str, name: str) -> dict[str, Any] | None:
        items = self._list(kind, name=name) if KINDS[kind].name_filter else self._list(kind)
        return next((i for i in items if i.get("name") == name), None)

    def get(self, resource: Resource) -> dict[str, Any]:
        fn = getattr(self.client, f"get_{KINDS[resource.kind].singular}")
        return self._call(lambda: fn(resource.id), "get", str(resource))

    def status(self, resource: Resource) -> str | None:
        field = KINDS[resource.kind].status_field
        return self.get(resource).get(field) if field else None

    # ---------------------------------------------------------------- look-ups
    def find_resource_group(self, name: str) -> str:
        if self.resource_controller is None:
            raise VpcError("find", f"resource group {name!r}", None, "no Resource Manager client configured")
        return self.resource_controller.find_resource_group(name)

    def newest_image(self, pattern: str) -> Resource:
        """The most recently created available image whose name matches the regex `pattern`."""
        regex = re.compile(pattern)
        images = [i for i in self._list("images", status="available") if regex.search(i.get("name", ""))]
        if not images:
            raise VpcError("find", f"image matching {pattern!r}", None, "no available image has a matching name")
        return self._resource("images", max(images, key=lambda i: i["created_at"]))

    def find(self, kind: str, name: str) -> Resource | None:
        found = self._find_raw(kind, name)
        return self._resource(kind, found) if found else None

    def image_name_taken(self, name: str) -> bool:
        return self._find_raw("images", name) is not None

    def snapshot_name_taken(self, name: str) -> bool:
        return self._find_raw("snapshots", name) is not None

    def _in_group(self, item: Mapping[str, Any]) -> bool:
        """Whether an item lies in this adapter's resource group (every group when none is set)."""
        return self.resource_group_id is None or (item.get("resource_group") or {}).get("id") == self.resource_group_id

    def list_by_prefix(self, prefix: str, kinds: Iterable[str] = TEARDOWN_ORDER) -> list[Resource]:
        """Resources whose name starts with `prefix` (orphan reaping), in teardown order, in the
        adapter's resource group only."""
        kinds = list(kinds)
        defaults = set()
        if "security_groups" in kinds:  # a VPC's default group goes with the VPC; never delete it alone
            defaults = {
                v["default_security_group"]["id"] for v in self._list("vpcs") if v.get("default_security_group")
            }
        return [
            self._resource(kind, item)
            for kind in kinds
            for item in self._list(kind)
            if item.get("name", "").startswith(prefix) and item["id"] not in defaults and self._in_group(item)
        ]

    def list_tagged(self, kind: str, tag: str) -> list[tuple[Resource, list[str]]]:
        """Volumes or snapshots (the kinds tagged on create) carrying the user tag `tag`, with all
        their tags, in the adapter's resource group only."""
        return [
            (self._resource(kind, item), list(item.get("user_tags") or []))
            for item in self._list(kind, tag=tag)
            if self._in_group(item)
        ]

    # ---------------------------------------------------------------- creates
    def create_vpc(self, name: str) -> Resource:
        return self._create("vpcs", name, lambda: self.client.create_vpc(name=name, resource_group=self._rg()))

    def create_subnet(self, name: str, vpc_id: str, address_count: int = 256) -> Resource:
        proto = {
            "name": name,
            "vpc": {"id": vpc_id},
            "zone": self._zone(),
            "total_ipv4_address_count": address_count,
            "ip_version": "ipv4",
        }
        if self._rg():
            proto["resource_group"] = self._rg()
        return self._create("subnets", name, lambda: self.client.create_subnet(proto))

    def create_security_group(self, name: str, vpc_id: str, ssh_from: str | None = None) -> Resource:
        """Outbound: everything. Inbound: TCP 22 from the CIDR `ssh_from` only when given."""
        rules: list[dict[str, Any]] = [
            {"direction": "outbound", "protocol": "any", "ip_version": "ipv4", "remote": {"cidr_block": "0.0.0.0/0"}}
        ]
        if ssh_from:
            rules.append(
                {
                    "direction": "inbound",
                    "protocol": "tcp",
                    "ip_version": "ipv4",
                    "port_min": 22,
                    "port_max": 22,
                    "remote": {"cidr_block": ssh_from},
                }
            )
        return self._create(
            "security_groups",
            name,
            lambda: self.client.create_security_group(
                vpc={"id": vpc_id}, name=name, resource_group=self._rg(), rules=rules
            ),
        )

    def create_key(self, name: str, public_key: str) -> Resource:
        return self._create(
            "keys", name, lambda: self.client.create_key(public_key=public_key, name=name, resource_group=self._rg())
        )

    def create_volume(
        self, name: str, capacity_gb: int, profile: str = "10iops-tier", encryption_key_crn: str | None = None
    ) -> Resource:
        proto: dict[str, Any] = {
            "name": name,
            "capacity": capacity_gb,
            "profile": {"name": profile},
            "zone": self._zone(),
            "user_tags": self.tags,
        }
        if encryption_key_crn:
            proto["encryption_key"] = {"crn": encryption_key_crn}
        if self._rg():
            proto["resource_group"] = self._rg()
        return self._create("volumes", name, lambda: self.client.create_volume(proto))

    def create_volume_from_snapshot(
        self, name: str, snapshot_id: str, capacity_gb: int, profile: str, encryption_key_crn: str | None = None
    ) -> Resource:
        """A volume restored from a snapshot (capacity at least the snapshot's): how an export reads a
        stopped server's data volume without touching it."""
        proto: dict[str, Any] = {
            "name": name,
            "capacity": capacity_gb,
            "profile": {"name": profile},
            "zone": self._zone(),
            "source_snapshot": {"id": snapshot_id},
            "user_tags": self.tags,
        }
        if encryption_key_crn:
            proto["encryption_key"] = {"crn": encryption_key_crn}
        if self._rg():
            proto["resource_group"] = self._rg()
        return self._create("volumes", name, lambda: self.client.create_volume(proto))

    def create_instance(
        self,
        name: str,
        *,
        subnet_id: str,
        security_group_id: str,
        image_id: str,
        profile: str,
        user_data: str,
        key_ids: Sequence[str] = (),
        data_volumes: Mapping[str, str] | None = None,
        boot_volume_gb: int = 100,
        encryption_key_crn: str | None = None,
    ) -> Resource:
        """A VSI with the metadata service on; `data_volumes` maps attachment names (e.g. data,
        boot, qcow2) to ids of existing volumes, kept when the instance is deleted."""
        boot_volume: dict[str, Any] = {
            "name": f"{name}-root"[:63],
            "capacity": boot_volume_gb,
            "profile": {"name": "general-purpose"},
            "user_tags": self.tags,
        }
        if encryption_key_crn:
            boot_volume["encryption_key"] = {"crn": encryption_key_crn}
        proto: dict[str, Any] = {
            "name": name,
            "zone": self._zone(),
            "image": {"id": image_id},
            "profile": {"name": profile},
            "keys": [{"id": k} for k in key_ids],
            "user_data": user_data,
            "metadata_service": {"enabled": True, "protocol": "http"},
            "primary_network_interface": {
                "name": "eth0",
                "subnet": {"id": subnet_id},
                "security_groups": [{"id": security_group_id}],
            },
            "boot_volume_attachment": {"volume": boot_volume, "delete_volume_on_instance_delete": True},
            "volume_attachments": [
                {"name": att, "volume": {"id": vid}, "delete_volume_on_instance_delete": False}
                for att, vid in (data_volumes or {}).items()
            ],
        }
        if self._rg():
            proto["resource_group"] = self._rg()
        log.info("creating instance %s (%s, user data %d bytes)", name, profile, len(user_data.encode()))
        return self._create("instances", name, lambda: self.client.create_instance(proto))

    def create_floating_ip(self, name: str, instance: Resource) -> Resource:
        nic = self.get(instance)["primary_network_interface"]["id"]
        proto: dict[str, Any] = {"name": name, "target": {"id": nic}}
        if self._rg():
            proto["resource_group"] = self._rg()
        return self._create("floating_ips", name, lambda: self.client.create_floating_ip(proto))

    def create_image(
        self, name: str, cos_href: str, os_name: str, encryption: ImageEncryption | None = None
    ) -> Resource:
        """A custom image from a qcow2 in COS (`cos://<region>/<bucket>/<object>`)."""
        if not re.fullmatch(r"cos://[^/]+/[^/]+/.+", cos_href):
            raise ValueError(f"image file {cos_href!r} is not cos://<region>/<bucket>/<object>")
        proto: dict[str, Any] = {"name": name, "file": {"href": cos_href}, "operating_system": {"name": os_name}}
        if encryption:
            proto["encryption_key"] = {"crn": encryption.key_crn}
            proto["encrypted_data_key"] = encryption.encrypted_data_key
        if self._rg():
            proto["resource_group"] = self._rg()
        return self._create("images", name, lambda: self.client.create_image(proto))

    def create_snapshot(self, volume_id: str, name: str) -> Resource:
        proto: dict[str, Any] = {"name": name, "source_volume": {"id": volume_id}, "user_tags": self.tags}
        if self._rg():
            proto["resource_group"] = self._rg()
        return self._create("snapshots", name, lambda: self.client.create_snapshot(proto))

    # ---------------------------------------------------------------- waits
    def wait_for(
        self, resource: Resource, states: Iterable[str], *, timeout: float, poll: float | None = None
    ) -> dict[str, Any]:
        """Poll until the resource's state is one of `states`; a failed state or the deadline
        raises VpcError / VpcTimeout naming the resource, its last state and the wait."""
        wanted = set(states)
        field = KINDS[resource.kind].status_field
        if field is None:
            return self.get(resource)
        start = time.monotonic()
        interval = self.poll_interval if poll is None else poll
        while True:
            res = self.get(resource)
            state = res.get(field)
            if state in wanted:
                return res
            elapsed = time.monotonic() - start
            if state in FAILED_STATES:
                reasons = "; ".join(r.get("message", "") for r in res.get("status_reasons", [])) or "no reason given"
                raise VpcError("wait for", str(resource), None, f"it is {state}: {reasons}")
            if elapsed >= timeout:
                raise VpcTimeout(
                    "wait for",
                    str(resource),
                    None,
                    f"still {state} after {elapsed:.0f}s (wanted {'/'.join(sorted(wanted))} within {timeout:.0f}s)",
                )
            log.info("waiting for %s: %s (%.0fs)", resource, state, elapsed)
            time.sleep(min(interval, timeout - elapsed))

    def wait_ready(self, resource: Resource, *, timeout: float, poll: float | None = None) -> dict[str, Any]:
        ready = KINDS[resource.kind].ready
        return self.wait_for(resource, [ready] if ready else [], timeout=timeout, poll=poll)

    # ---------------------------------------------------------------- deletes
    def delete(self, resource: Resource, *, timeout: float, poll: float | None = None) -> bool:
        """Delete and wait until the API answers 404. False when it was already gone."""
        fn = getattr(self.client, f"delete_{KINDS[resource.kind].singular}")
        try:
            # 409 is retried: a dependent (an instance's attachment, a subnet's NIC) may still be going.
            self._call(lambda: fn(resource.id), "delete", str(resource), retry_conflict=True)
        except VpcError as exc:
            if exc.status == 404:
                log.info("%s was already gone", resource)
                return False
            raise
        self.wait_gone(resource, timeout=timeout, poll=poll)
        log.info("deleted %s", resource)
        return True

    def find_reserved_ip(self, subnet_id: str, name: str) -> dict[str, Any] | None:
        """A subnet's reserved IP by name."""
        items = self._list(
            "subnet_reserved_ips", subnet_id, key="reserved_ips", what=f"reserved IPs of subnet {subnet_id}"
        )
        return next((i for i in items if i.get("name") == name), None)

    def delete_reserved_ip(self, subnet_id: str, ip_id: str) -> bool:
        """Delete a reserved IP (gone at once); False when it was already gone. 409 (still bound to
        an interface that is going away) is retried."""
        try:
            self._call(
                lambda: self.client.delete_subnet_reserved_ip(subnet_id, ip_id),
                "delete",
                f"reserved IP {ip_id} of subnet {subnet_id}",
                retry_conflict=True,
            )
        except VpcError as exc:
            if exc.status == 404:
                return False
            raise
        log.info("deleted reserved IP %s of subnet %s", ip_id, subnet_id)
        return True

    def wait_gone(self, resource: Resource, *, timeout: float, poll: float | None = None) -> None:
        start = time.monotonic()
        interval = self.poll_interval if poll is None else poll
        while True:
            try:
                res = self.get(resource)
            except VpcError as exc:
                if exc.status == 404:
                    return
                raise
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                field = KINDS[resource.kind].status_field
                state = res.get(field) if field else "present"
                raise VpcTimeout(
                    "wait for deletion of",
                    str(resource),
                    None,
                    f"still {state} after {elapsed:.0f}s (limit {timeout:.0f}s)",
                )
            time.sleep(min(interval, timeout - elapsed))

    def teardown(self, resources: Iterable[Resource], *, timeout: float, poll: float | None = None) -> list[str]:
        """Delete `resources` in dependency order (floating IP → instance → volumes → subnet →
        security group → key → VPC), carrying on past failures; returns the failures' messages
        (empty = everything is gone). Products (images, snapshots) are refused."""
        todo = list(resources)
        products = [r for r in todo if r.kind not in TEARDOWN_ORDER]
        if products:
            raise ValueError(f"teardown deletes temporary resources only, not {', '.join(map(str, products))}")
        failures: list[str] = []
        for kind in TEARDOWN_ORDER:
            for res in (r for r in todo if r.kind == kind):
                try:
                    self.delete(res, timeout=timeout, poll=poll)
                except VpcError as exc:
                    log.error("teardown: %s", exc)
                    failures.append(str(exc))
        return failures
