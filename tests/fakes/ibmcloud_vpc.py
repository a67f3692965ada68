"""The VPC API part of the IBM Cloud fake (`/v1/...` as ibm_vpc.VpcV1 calls it)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from tests.fakes.ibmcloud_models import M, check_name, validate, validate_fields
from tests.fakes.ibmcloud_state import Entry, FakeApiError, Store, new_id, now_iso

USER_DATA_LIMIT = 64 * 1024
INSTANCE_PROFILES: dict[str, dict[str, Any]] = {
    "bx2d-16x64": {"arch": "amd64", "vcpu": 16, "memory": 64},
    "bx2-2x8": {"arch": "amd64", "vcpu": 2, "memory": 8},
    "cx2-2x4": {"arch": "amd64", "vcpu": 2, "memory": 4},
    "mz2o-2x16": {"arch": "s390x", "vcpu": 2, "memory": 16},
}
RULE_PROTOCOLS = ("any", "all", "icmp_tcp_udp", "icmp", "tcp", "udp")
VOLUME_PROFILES = ("general-purpose", "5iops-tier", "10iops-tier", "custom", "sdp")
OPERATING_SYSTEMS: dict[str, dict[str, Any]] = {
    "ubuntu-22-04-amd64": {"architecture": "amd64", "family": "Ubuntu Linux", "vendor": "Canonical"},
    "ubuntu-24-04-amd64": {"architecture": "amd64", "family": "Ubuntu Linux", "vendor": "Canonical"},
    "zos-2-4-s390x-dev-test-byol": {"architecture": "s390x", "family": "z/OS", "vendor": "IBM"},
    "zos-2-5-s390x-dev-test-byol": {"architecture": "s390x", "family": "z/OS", "vendor": "IBM"},
    "zos-3-1-s390x-dev-test-byol": {"architecture": "s390x", "family": "z/OS", "vendor": "IBM"},
}
# (name, os, created_at): several generations so "newest matching a regex" means something.
PUBLIC_IMAGES: tuple[tuple[str, str, str], ...] = (
    ("ibm-ubuntu-22-04-3-minimal-amd64-2", "ubuntu-22-04-amd64", "2023-11-02T10:00:00Z"),
    ("ibm-ubuntu-22-04-4-minimal-amd64-3", "ubuntu-22-04-amd64", "2024-06-20T10:00:00Z"),
    ("ibm-ubuntu-22-04-4-minimal-amd64-1", "ubuntu-22-04-amd64", "2024-03-01T10:00:00Z"),
    ("ibm-ubuntu-24-04-minimal-amd64-1", "ubuntu-24-04-amd64", "2024-09-01T10:00:00Z"),
    ("ibm-zos-2-5-s390x-dev-test-wazi-7", "zos-2-5-s390x-dev-test-byol", "2024-05-01T10:00:00Z"),
)
COLLECTIONS = {
    "vpcs": ("vpc", "vpc"),
    "subnets": ("subnet", "subnet"),
    "security_groups": ("security_group", "security-group"),
    "keys": ("key", "key"),
    "volumes": ("volume", "volume"),
    "instances": ("instance", "instance"),
    "floating_ips": ("floating_ip", "floating-ip"),
    "images": ("image", "image"),
    "snapshots": ("snapshot", "snapshot"),
}


class VpcContext(Protocol):
    """What the VPC handlers need from the fake that owns them."""

    url: str
    region: str
    account_id: str
    store: Store

    def resource_group_ref(self, rid: str | None) -> dict[str, Any]: ...
    def cos_object_exists(self, region: str, bucket: str, key: str) -> bool: ...
    def instance_created(self, entry: Entry) -> None: ...


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    params: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], tuple[int, Any]]


class VpcApi:
    def __init__(self, ctx: VpcContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self._counter = itertools.count(1)
        for name, os_name, created in PUBLIC_IMAGES:
            self._add_public_image(name, os_name, created)

    # ---------------------------------------------------------------- routing
    def routes(self) -> list[tuple[str, str, Handler]]:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", r"/v1/regions", self.list_regions),
            ("GET", r"/v1/regions/(?P<region>[^/]+)/zones", self.list_zones),
            ("GET", r"/v1/instance/profiles", self.list_instance_profiles),
            ("GET", r"/v1/instance/profiles/(?P<name>[^/]+)", self.get_instance_profile),
            ("GET", r"/v1/volume/profiles", self.list_volume_profiles),
            ("GET", r"/v1/operating_systems", self.list_operating_systems),
            ("GET", r"/v1/vpcs/(?P<id>[^/]+)/default_security_group", self.get_default_sg),
            ("GET", r"/v1/security_groups/(?P<sg>[^/]+)/rules", self.list_rules),
            ("POST", r"/v1/security_groups/(?P<sg>[^/]+)/rules", self.create_rule),
            ("DELETE", r"/v1/security_groups/(?P<sg>[^/]+)/rules/(?P<id>[^/]+)", self.delete_rule),
            ("GET", r"/v1/instances/(?P<inst>[^/]+)/volume_attachments", self.list_attachments),
            ("POST", r"/v1/instances/(?P<inst>[^/]+)/volume_attachments", self.create_attachment),
            ("GET", r"/v1/instances/(?P<inst>[^/]+)/volume_attachments/(?P<id>[^/]+)", self.get_attachment),
            ("DELETE", r"/v1/instances/(?P<inst>[^/]+)/volume_attachments/(?P<id>[^/]+)", self.delete_attachment),
            ("POST", r"/v1/instances/(?P<inst>[^/]+)/actions", self.instance_action),
            ("GET", r"/v1/subnets/(?P<subnet>[^/]+)/reserved_ips", self.list_reserved_ips),
            ("GET", r"/v1/subnets/(?P<subnet>[^/]+)/reserved_ips/(?P<id>[^/]+)", self.get_reserved_ip),
            ("DELETE", r"/v1/subnets/(?P<subnet>[^/]+)/reserved_ips/(?P<id>[^/]+)", self.delete_reserved_ip),
        ]
        for kind in COLLECTIONS:
            routes += [
                ("GET", rf"/v1/{kind}", self._lister(kind)),
                ("POST", rf"/v1/{kind}", getattr(self, f"create_{kind}")),
                ("GET", rf"/v1/{kind}/(?P<id>[^/]+)", self._getter(kind)),
                ("DELETE", rf"/v1/{kind}/(?P<id>[^/]+)", self._deleter(kind)),
            ]
        return routes

    # ---------------------------------------------------------------- helpers
    def href(self, kind: str, rid: str) -> str:
        return f"{self.ctx.url}/v1/{kind}/{rid}"

    def crn(self, kind: str, rid: str, zone: str | None = None) -> str:
        scope = zone or self.ctx.region
        return f"crn:v1:bluemix:public:is:{scope}:a/{self.ctx.account_id}::{COLLECTIONS[kind][1]}:{rid}"

    def zone_ref(self, zone: Any) -> dict[str, str]:
        name = zone.get("name") if isinstance(zone, dict) else None
        if name not in {f"{self.ctx.region}-{n}" for n in (1, 2, 3)}:
            raise FakeApiError(400, "validation_invalid_zone", f"zone {name!r} is not a zone of {self.ctx.region}")
        return {"name": name, "href": f"{self.ctx.url}/v1/regions/{self.ctx.region}/zones/{name}"}

    def ref(self, entry: Entry) -> dict[str, Any]:
        res = entry.res
        return {k: res[k] for k in ("id", "crn", "href", "name", "resource_type") if k in res}

    def resolve(self, kind: str, identity: Any, what: str) -> Entry:
        """An identity object ({id} | {crn} | {href}) → the stored entry, or 404."""
        if not isinstance(identity, dict):
            raise FakeApiError(400, "validation_failed", f"{what} must be an identity object")
        for entry in self.store.entries(kind):
            if any(identity.get(k) == entry.res.get(k) for k in ("id", "crn", "href") if identity.get(k)):
                return entry
        raise FakeApiError(404, "not_found", f"{what} {identity} cannot be found")

    def base(self, kind: str, body: dict[str, Any], *, zone: str | None = None) -> dict[str, Any]:
        """Fields every created resource has; checks the name and its uniqueness."""
        singular = COLLECTIONS[kind][0]
        name = body.get("name") or f"{singular.replace('_', '-')}-{next(self._counter)}-fake"
        check_name(name, singular)
        rid = new_id("0717_" if kind == "instances" else "r000-")
        return {
            "id": rid,
            "crn": self.crn(kind, rid, zone),
            "href": self.href(kind, rid),
            "name": name,
            "created_at": now_iso(),
            "resource_type": singular,
            "resource_group": self.ctx.resource_group_ref((body.get("resource_group") or {}).get("id")),
        }

    def unique(self, kind: str, name: str | None, scope: Callable[[Entry], bool] = lambda e: True) -> None:
        if name and any(e.res.get("name") == name and scope(e) for e in self.store.entries(kind)):
            raise FakeApiError(400, "validation_unique_failed", f"Provided Name ({name}) is not unique")

    def page(self, req: Request, kind: str, key: str, items: list[dict[str, Any]]) -> tuple[int, Any]:
        try:
            limit = int(req.query.get("limit", 50))
            start = int(req.query.get("start", 0))
        except ValueError as exc:
            raise FakeApiError(400, "bad_request", f"limit/start must be integers: {exc}") from exc
        if not 1 <= limit <= 100:
            raise FakeApiError(400, "bad_request", f"limit {limit} must be between 1 and 100")
        base_q = {k: v for k, v in req.query.items() if k not in ("start", "limit")}
        link = f"{self.ctx.url}{req.path}?"
        out: dict[str, Any] = {
            key: items[start : start + limit],
            "limit": limit,
            "total_count": len(items),
            "first": {"href": link + urlencode({**base_q, "limit": limit})},
        }
        if start + limit < len(items):
            out["next"] = {"href": link + urlencode({**base_q, "limit": limit, "start": start + limit})}
        return 200, out

    @staticmethod
    def matches(res: dict[str, Any], query: dict[str, str]) -> bool:
        """Collection filters: `name`, `tag`, `status` (comma list) and dotted paths like `vpc.id`."""
        for key, want in query.items():
            if key in ("version", "generation", "limit", "start", "sort", "user_data_format"):
                continue
            if key == "tag":
                if want not in res.get("user_tags", []):
                    return False
                continue
            value: Any = res
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if key in ("status", "lifecycle_state"):
                if value not in want.split(","):
                    return False
            elif value is None or (str(value).lower() if isinstance(value, bool) else str(value)) != want:
                return False
        return True

    def _lister(self, kind: str) -> Handler:
        def handler(req: Request) -> tuple[int, Any]:
            with self.store.lock:
                items = [self.store.public(e) for e in self.store.listed(kind) if self.matches(e.res, req.query)]
            items.sort(key=lambda r: r["created_at"], reverse=True)
            return self.page(req, kind, kind, items)

        return handler

    def _getter(self, kind: str) -> Handler:
        def handler(req: Request) -> tuple[int, Any]:
            entry = self.store.observe(kind, req.params["id"])
            return 200, self.store.public(entry)

        return handler

    def _deleter(self, kind: str) -> Handler:
        def handler(req: Request) -> tuple[int, Any]:
            with self.store.lock:
                entry = self.store.get(kind, req.params["id"])
                getattr(self, f"check_delete_{kind}", lambda e: None)(entry)
                self.store.start_deleting(entry)
            return (202 if kind in ("volumes", "images") else 204), None

        return handler

    def in_use(self, entry: Entry, message: str) -> FakeApiError:
        return FakeApiError(409, f"{entry.res['resource_type']}_in_use", f"{entry.res['name']}: {message}")

    # ---------------------------------------------------------------- catalog
    def list_regions(self, req: Request) -> tuple[int, Any]:
        region = {
            "name": self.ctx.region,
            "href": f"{self.ctx.url}/v1/regions/{self.ctx.region}",
            "status": "available",
        }
        return 200, {"regions": [region]}

    def list_zones(self, req: Request) -> tuple[int, Any]:
        if req.params["region"] != self.ctx.region:
            raise FakeApiError(404, "not_found", f"region {req.params['region']} cannot be found")
        zones = [self.zone_ref({"name": f"{self.ctx.region}-{n}"}) | {"status": "available"} for n in (1, 2, 3)]
        return 200, {"zones": zones}

    def _profile(self, name: str) -> dict[str, Any]:
        spec = INSTANCE_PROFILES[name]
        return {
            "name": name,
            "href": f"{self.ctx.url}/v1/instance/profiles/{name}",
            "family": name.split("-")[0],
            "os_architecture": {"type": "enum", "default": spec["arch"], "values": [spec["arch"]]},
            "vcpu_count": {"type": "fixed", "value": spec["vcpu"]},
            "memory": {"type": "fixed", "value": spec["memory"]},
        }

    def list_instance_profiles(self, req: Request) -> tuple[int, Any]:
        return 200, {"profiles": [self._profile(n) for n in INSTANCE_PROFILES]}

    def get_instance_profile(self, req: Request) -> tuple[int, Any]:
        if req.params["name"] not in INSTANCE_PROFILES:
            raise FakeApiError(404, "not_found", f"instance profile {req.params['name']} cannot be found")
        return 200, self._profile(req.params["name"])

    def list_volume_profiles(self, req: Request) -> tuple[int, Any]:
        return 200, {"profiles": [{"name": n, "family": "tiered"} for n in VOLUME_PROFILES]}

    def _os(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "href": f"{self.ctx.url}/v1/operating_systems/{name}",
            **OPERATING_SYSTEMS[name],
            "display_name": name,
            "dedicated_host_only": False,
        }

    def list_operating_systems(self, req: Request) -> tuple[int, Any]:
        return 200, {"operating_systems": [self._os(n) for n in OPERATING_SYSTEMS]}

    def _add_public_image(self, name: str, os_name: str, created: str) -> None:
        rid = new_id("r000-")
        res = {
            "id": rid,
            "crn": self.crn("images", rid),
            "href": self.href("images", rid),
            "name": name,
            "created_at": created,
            "resource_type": "image",
            "status": "available",
            "visibility": "public",
            "owner_type": "provider",
            "encryption": "none",
            "operating_system": self._os(os_name),
            "file": {"size": 1},
            "resource_group": self.ctx.resource_group_ref(None),
        }
        self.store.add(Entry("images", res, private={"catalog": True}), pending=False)

    # ---------------------------------------------------------------- VPCs
    def create_vpcs(self, req: Request) -> tuple[int, Any]:
        body = validate_fields(
            req.body,
            "VPC",
            required=set(),
            allowed={"address_prefix_management", "classic_access", "dns", "name", "resource_group"},
        )
        if "dns" in body:
            validate(body["dns"], M.VPCDNSPrototype, "VPC dns")
        with self.store.lock:
            self.unique("vpcs", body.get("name"))
            res = self.base("vpcs", body) | {
                "classic_access": bool(body.get("classic_access")),
                "default_network_acl": {"id": new_id()},
                "default_routing_table": {"id": new_id()},
            }
            sg = self._new_sg(res, {"name": f"{res['name']}-default-sg"[:63].rstrip("-")}, default=True)
            res["default_security_group"] = self.ref(sg)
            entry = self.store.add(Entry("vpcs", res, private={"default_sg": sg.res["id"]}))
            entry.on_removed = lambda: self.store.remove(sg)
        return 201, self.store.public(entry)

    def get_default_sg(self, req: Request) -> tuple[int, Any]:
        vpc = self.store.get("vpcs", req.params["id"])
        return 200, self.store.public(self.store.get("security_groups", vpc.private["default_sg"]))

    def check_delete_vpcs(self, vpc: Entry) -> None:
        vid = vpc.res["id"]
        for kind in ("subnets", "instances", "security_groups"):
            for e in self.store.entries(kind):
                if e.res.get("vpc", {}).get("id") == vid and e.res["id"] != vpc.private["default_sg"]:
                    raise self.in_use(vpc, f"the VPC still contains {e.res['resource_type']} {e.res['name']}")

    # ---------------------------------------------------------------- subnets
    def create_subnets(self, req: Request) -> tuple[int, Any]:
        validate(req.body, M.SubnetPrototype, "SubnetPrototype")
        body = req.body
        with self.store.lock:
            vpc = self.resolve("vpcs", body["vpc"], "vpc")
            self.unique("subnets", body.get("name"), lambda e: e.res["vpc"]["id"] == vpc.res["id"])
            zone = self.zone_ref(body.get("zone"))
            count = int(body.get("total_ipv4_address_count", 256))
            if count < 8 or count & (count - 1):
                raise FakeApiError(
                    400, "validation_failed", f"total_ipv4_address_count {count} is not a power of 2 ≥ 8"
                )
            n = len(self.store.entries("subnets")) + 1
            res = self.base("subnets", body, zone=zone["name"]) | {
                "vpc": self.ref(vpc),
                "zone": zone,
                "ip_version": "ipv4",
                "total_ipv4_address_count": count,
                "available_ipv4_address_count": count - 5,
                "ipv4_cidr_block": f"10.{n % 250}.{n // 250}.0/24",
            }
            entry = self.store.add(Entry("subnets", res))
        return 201, self.store.public(entry)

    def check_delete_subnets(self, subnet: Entry) -> None:
        for inst in self.store.entries("instances"):
            if inst.res["primary_network_interface"]["subnet"]["id"] == subnet.res["id"]:
                raise self.in_use(subnet, f"instance {inst.res['name']} has a network interface on the subnet")
        for rip in self._reserved_ips(subnet.res["id"]):
            raise self.in_use(subnet, f"reserved IP {rip.res['name']} ({rip.res['address']}) is in the subnet")

    # ---------------------------------------------------------------- reserved IPs
    def _reserved_ips(self, subnet_id: str) -> list[Entry]:
        return [e for e in self.store.entries("reserved_ips") if e.private["subnet"] == subnet_id]

    def _reserved_ip(self, req: Request) -> Entry:
        entry = self.store.get("reserved_ips", req.params["id"])
        if entry.private["subnet"] != self.store.get("subnets", req.params["subnet"]).res["id"]:
            raise FakeApiError(404, "not_found", f"reserved IP {req.params['id']} is not in that subnet")
        return entry

    def list_reserved_ips(self, req: Request) -> tuple[int, Any]:
        subnet = self.store.get("subnets", req.params["subnet"])
        with self.store.lock:
            listed = {e.res["id"] for e in self.store.listed("reserved_ips")}
            items = [self.store.public(e) for e in self._reserved_ips(subnet.res["id"]) if e.res["id"] in listed]
        return self.page(req, "reserved_ips", "reserved_ips", items)

    def get_reserved_ip(self, req: Request) -> tuple[int, Any]:
        return 200, self.store.public(self._reserved_ip(req))

    def delete_reserved_ip(self, req: Request) -> tuple[int, Any]:
        with self.store.lock:
            entry = self._reserved_ip(req)
            if entry.res.get("target"):
                raise self.in_use(entry, f"the reserved IP is bound to {entry.res['target']['name']}")
            self.store.remove(entry)
        return 204, None

    def _primary_ip(self, nic_body: dict[str, Any], subnet: Entry) -> tuple[Entry | None, dict[str, Any] | None]:
        """(an existing reserved IP to bind, or the prototype of a new one) from primary_ip, if given."""
        proto = nic_body.get("primary_ip")
        if not proto:
            return None, None
        if any(k in proto for k in ("id", "href")):
            found = next((e for e in self._reserved_ips(subnet.res["id"])
                          if proto.get("id") == e.res["id"] or proto.get("href") == e.res["href"]), None)
            if found is None:
                raise FakeApiError(404, "not_found", f"reserved IP {proto} cannot be found in {subnet.res['name']}")
            if found.res.get("target"):
                raise self.in_use(found, "the reserved IP is already bound")
            return found, None
        address = proto.get("address")
        try:
            inside = ipaddress.IPv4Address(address) in ipaddress.IPv4Network(subnet.res["ipv4_cidr_block"])
        except ValueError:
            inside = False
        if not inside:
            raise FakeApiError(400, "validation_failed", f"primary_ip.address {address!r} is not in the subnet")
        for e in self._reserved_ips(subnet.res["id"]):
            if e.res["address"] == address:
                raise FakeApiError(409, "reserved_ip_in_use", f"address {address} is reserved as {e.res['name']}")
            if proto.get("name") and e.res["name"] == proto["name"]:
                raise FakeApiError(400, "validation_unique_failed", f"Provided Name ({proto['name']}) is not unique")
        if proto.get("name"):
            check_name(proto["name"], "reserved IP")
        return None, proto

    def _bind_reserved_ip(
        self, subnet: Entry, nic: dict[str, Any], found: Entry | None, proto: dict[str, Any] | None
    ) -> None:
        target = {k: nic[k] for k in ("id", "href", "name")} | {"resource_type": "network_interface"}
        if found is None:
            assert proto is not None
            rid = new_id("0717-")
            res = {
                "id": rid, "href": f"{subnet.res['href']}/reserved_ips/{rid}",
                "name": proto.get("name") or f"reserved-ip-{next(self._counter)}", "address": proto["address"],
                "auto_delete": bool(proto.get("auto_delete", True)), "owner": "user", "created_at": now_iso(),
                "lifecycle_state": "stable", "resource_type": "subnet_reserved_ip",
            }
            found = self.store.add(Entry("reserved_ips", res, private={"subnet": subnet.res["id"]}), pending=False)
        found.res["target"] = target
        nic["primary_ip"] = {k: found.res[k] for k in ("id", "href", "name", "address", "resource_type")}

    # ---------------------------------------------------------------- security groups
    def _new_sg(self, vpc_res: dict[str, Any], body: dict[str, Any], default: bool = False) -> Entry:
        res = self.base("security_groups", body) | {
            "vpc": {k: vpc_res[k] for k in ("id", "crn", "href", "name")},
            "rules": [],
            "targets": [],
        }
        entry = self.store.add(Entry("security_groups", res, private={"default": default}), pending=False)
        for rule in body.get("rules", []):
            self._add_rule(entry, rule)
        return entry

    def create_security_groups(self, req: Request) -> tuple[int, Any]:
        body = validate_fields(
            req.body, "security group", required={"vpc"}, allowed={"name", "resource_group", "rules"}
        )
        for i, rule in enumerate(body.get("rules", [])):
            validate(rule, M.SecurityGroupRulePrototype, f"rules[{i}]")
        with self.store.lock:
            vpc = self.resolve("vpcs", body["vpc"], "vpc")
            self.unique("security_groups", body.get("name"), lambda e: e.res["vpc"]["id"] == vpc.res["id"])
            entry = self._new_sg(vpc.res, body)
        return 201, self.store.public(entry)

    def check_delete_security_groups(self, sg: Entry) -> None:
        if sg.private.get("default"):
            raise self.in_use(sg, "the default security group of a VPC cannot be deleted")
        for inst in self.store.entries("instances"):
            if sg.res["id"] in {s["id"] for s in inst.res["primary_network_interface"]["security_groups"]}:
                raise self.in_use(sg, f"instance {inst.res['name']} uses the security group")

    def _add_rule(self, sg: Entry, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("direction") not in ("inbound", "outbound"):
            raise FakeApiError(400, "validation_failed", f"rule direction {body.get('direction')!r} is not valid")
        if body.get("protocol") not in RULE_PROTOCOLS:
            raise FakeApiError(400, "validation_failed", f"rule protocol {body.get('protocol')!r} is not valid")
        rid = new_id()
        rule = dict(body) | {"id": rid, "href": f"{sg.res['href']}/rules/{rid}"}
        rule.setdefault("ip_version", "ipv4")
        rule.setdefault("remote", {"cidr_block": "0.0.0.0/0"})
        sg.res["rules"].append(rule)
        return rule

    def list_rules(self, req: Request) -> tuple[int, Any]:
        sg = self.store.get("security_groups", req.params["sg"])
        return 200, {"rules": list(self.store.public(sg)["rules"])}

    def create_rule(self, req: Request) -> tuple[int, Any]:
        validate(req.body, M.SecurityGroupRulePrototype, "SecurityGroupRulePrototype")
        with self.store.lock:
            sg = self.store.get("security_groups", req.params["sg"])
            return 201, dict(self._add_rule(sg, req.body))

    def delete_rule(self, req: Request) -> tuple[int, Any]:
        with self.store.lock:
            sg = self.store.get("security_groups", req.params["sg"])
            before = len(sg.res["rules"])
            sg.res["rules"] = [r for r in sg.res["rules"] if r["id"] != req.params["id"]]
            if len(sg.res["rules"]) == before:
                raise FakeApiError(404, "not_found", f"rule {req.params['id']} cannot be found")
        return 204, None

    # ---------------------------------------------------------------- keys
    def create_keys(self, req: Request) -> tuple[int, Any]:
        body = validate_fields(req.body, "key", required={"public_key"}, allowed={"name", "resource_group", "type"})
        parts = str(body["public_key"]).split()
        kind = {"ssh-rsa": "rsa", "ssh-ed25519": "ed25519"}.get(parts[0] if parts else "")
        try:
            blob = base64.b64decode(parts[1], validate=True) if kind and len(parts) > 1 else b""
        except ValueError:
            blob = b""
        if not blob or (body.get("type") and body["type"] != kind):
            raise FakeApiError(400, "key_invalid", "public_key is not a valid OpenSSH rsa or ed25519 public key")
        with self.store.lock:
            self.unique("keys", body.get("name"))
            fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            res = self.base("keys", body) | {
                "public_key": body["public_key"],
                "type": kind,
                "fingerprint": fingerprint,
                "length": len(blob) * 8,
            }
            entry = self.store.add(Entry("keys", res), pending=False)
        return 201, self.store.public(entry)

    # ---------------------------------------------------------------- volumes
    def _volume_res(self, body: dict[str, Any], zone: dict[str, str], kind_what: str) -> dict[str, Any]:
        profile = (body.get("profile") or {}).get("name")
        if profile not in VOLUME_PROFILES:
            raise FakeApiError(
                400, "validation_invalid_profile", f"{kind_what}: volume profile {profile!r} does not exist"
            )
        capacity = body.get("capacity", 100)
        if not isinstance(capacity, int) or not 10 <= capacity <= 16000:
            raise FakeApiError(400, "validation_failed", f"{kind_what}: capacity {capacity!r} must be 10–16000 GB")
        self.unique("volumes", body.get("name"))
        key_crn = (body.get("encryption_key") or {}).get("crn")
        res = self.base("volumes", body, zone=zone["name"]) | {
            "capacity": capacity,
            "profile": {"name": profile},
            "zone": zone,
            "iops": capacity * 10,
            "encryption": "user_managed" if key_crn else "provider_managed",
            "user_tags": list(body.get("user_tags", [])),
            "attachment_state": "unattached",
            "volume_attachments": [],
            "active": False,
            "busy": False,
            "bandwidth": 1000,
        }
        if key_crn:
            res["encryption_key"] = {"crn": key_crn}
        return res

    def create_volumes(self, req: Request) -> tuple[int, Any]:
        variant = validate(req.body, M.VolumePrototype, "VolumePrototype")
        with self.store.lock:
            body = dict(req.body)
            source = None
            if variant == "VolumePrototypeVolumeBySourceSnapshot":
                source = self.resolve("snapshots", body["source_snapshot"], "source_snapshot")
                if source.status != "stable":
                    raise FakeApiError(409, "snapshot_not_stable", f"snapshot {source.res['name']} is {source.status}")
                body.setdefault("capacity", source.res["minimum_capacity"])
                if body["capacity"] < source.res["minimum_capacity"]:
                    raise FakeApiError(
                        400, "validation_failed",
                        f"capacity {body['capacity']} is below the snapshot's {source.res['minimum_capacity']} GB",
                    )
            res = self._volume_res(body, self.zone_ref(body.get("zone")), "VolumePrototype")
            if source is not None:
                res["source_snapshot"] = self.ref(source)
            entry = self.store.add(Entry("volumes", res))
        return 201, self.store.public(entry)

    def check_delete_volumes(self, vol: Entry) -> None:
        if vol.res["volume_attachments"]:
            inst = vol.res["volume_attachments"][0]["instance"]["name"]
            raise self.in_use(vol, f"the volume is attached to instance {inst}")
        for snap in self.store.entries("snapshots"):
            if snap.res["source_volume"]["id"] == vol.res["id"] and snap.status == "pending":
                raise self.in_use(vol, f"snapshot {snap.res['name']} of the volume is still being taken")

    # ---------------------------------------------------------------- instances
    def create_instances(self, req: Request) -> tuple[int, Any]:
        variant = validate(req.body, M.InstancePrototype, "InstancePrototype")
        if "InstanceByImage" not in variant or "network_attachments" in req.body:
            raise FakeApiError(
                400, "not_supported", f"this fake creates instances by image with network interfaces, not {variant}"
            )
        body = req.body
        user_data = body.get("user_data")
        if user_data is not None and len(user_data.encode()) > USER_DATA_LIMIT:
            raise FakeApiError(
                400,
                "validation_failed",
                f"user_data is {len(user_data.encode())} bytes, the limit is {USER_DATA_LIMIT}",
            )
        with self.store.lock:
            self.unique("instances", body.get("name"))
            zone = self.zone_ref(body["zone"])
            profile = (body.get("profile") or {}).get("name", "bx2-2x8")
            if profile not in INSTANCE_PROFILES:
                raise FakeApiError(400, "validation_invalid_profile", f"instance profile {profile!r} does not exist")
            image = self.resolve("images", body["image"], "image")
            if image.status != "available":
                raise FakeApiError(409, "image_not_available", f"image {image.res['name']} is {image.status}")
            image_arch = image.res["operating_system"]["architecture"]
            if image_arch != INSTANCE_PROFILES[profile]["arch"]:
                raise FakeApiError(
                    400, "validation_failed", f"image architecture {image_arch} does not match profile {profile}"
                )
            keys = [self.ref(self.resolve("keys", k, "key")) for k in body.get("keys", [])]
            nic_body = body["primary_network_interface"]
            subnet = self.resolve("subnets", nic_body["subnet"], "primary_network_interface.subnet")
            if subnet.res["zone"]["name"] != zone["name"]:
                raise FakeApiError(
                    400, "validation_failed", f"subnet {subnet.res['name']} is not in zone {zone['name']}"
                )
            vpc_id = subnet.res["vpc"]["id"]
            if "vpc" in body and self.resolve("vpcs", body["vpc"], "vpc").res["id"] != vpc_id:
                raise FakeApiError(400, "validation_failed", "vpc does not match the subnet's VPC")
            sgs = [self.resolve("security_groups", s, "security group") for s in nic_body.get("security_groups", [])]
            if not sgs:
                sgs = [self.store.get("security_groups", self.store.get("vpcs", vpc_id).private["default_sg"])]
            for sg in sgs:
                if sg.res["vpc"]["id"] != vpc_id:
                    raise FakeApiError(400, "validation_failed", f"security group {sg.res['name']} is in another VPC")
            reserved, reserve = self._primary_ip(nic_body, subnet)
            data_vols = [self._attachable(a, zone, i) for i, a in enumerate(body.get("volume_attachments", []))]
            boot_body = body.get("boot_volume_attachment") or {}
            res = self.base("instances", body, zone=zone["name"])
            boot_vol_body = dict(boot_body.get("volume") or {"profile": {"name": "general-purpose"}})
            boot_vol_body.setdefault("name", f"{res['name']}-boot"[:63])
            boot_vol_body.setdefault("capacity", 100)
            boot_res = self._volume_res(boot_vol_body, zone, "boot volume")
            nic_id = new_id("0717-")
            res |= {
                "zone": zone,
                "profile": {"name": profile, "href": f"{self.ctx.url}/v1/instance/profiles/{profile}"},
                "image": self.ref(image),
                "vpc": self.ref(self.store.get("vpcs", vpc_id)),
                "vcpu": {"architecture": image_arch, "count": INSTANCE_PROFILES[profile]["vcpu"]},
                "memory": INSTANCE_PROFILES[profile]["memory"],
                "startable": True,
                "metadata_service": {
                    "enabled": bool((body.get("metadata_service") or {}).get("enabled")),
                    "protocol": "http",
                    "response_hop_limit": 1,
                },
                "primary_network_interface": {
                    "id": nic_id,
                    "name": nic_body.get("name", "eth0"),
                    "href": f"{self.href('instances', res['id'])}/network_interfaces/{nic_id}",
                    "subnet": self.ref(subnet),
                    "security_groups": [self.ref(s) for s in sgs],
                    "primary_ip": {
                        "address": subnet.res["ipv4_cidr_block"].replace(
                            ".0/24", f".{4 + len(self.store.entries('instances'))}"
                        )
                    },
                },
                "volume_attachments": [],
                "disks": [],
            }
            res["network_interfaces"] = [res["primary_network_interface"]]
            entry = Entry("instances", res, private={"user_data": user_data, "keys": keys})
            self.store.add(entry)
            if reserved is not None or reserve is not None:
                self._bind_reserved_ip(subnet, res["primary_network_interface"], reserved, reserve)
            boot = self.store.add(Entry("volumes", boot_res | {"status": "available"}), pending=False)
            res["boot_volume_attachment"] = self._attach(
                entry,
                boot,
                boot_body.get("name") or "boot-attachment",
                boot_body.get("delete_volume_on_instance_delete", True),
            )
            for att_body, vol in data_vols:
                self._attach(entry, vol, att_body.get("name"), att_body.get("delete_volume_on_instance_delete", False))
            entry.on_removed = lambda: self._instance_removed(entry)
        self.ctx.instance_created(entry)
        return 201, self.store.public(entry)

    def _attachable(self, att: dict[str, Any], zone: dict[str, str], i: int) -> tuple[dict[str, Any], Entry]:
        vol_body = att["volume"]
        if not any(k in vol_body for k in ("id", "crn", "href")):
            vol_res = self._volume_res(vol_body, zone, f"volume_attachments[{i}].volume")
            return att, self.store.add(Entry("volumes", vol_res | {"status": "available"}), pending=False)
        vol = self.resolve("volumes", vol_body, f"volume_attachments[{i}].volume")
        if vol.status != "available":
            raise FakeApiError(409, "volume_not_available", f"volume {vol.res['name']} is {vol.status}")
        if vol.res["volume_attachments"]:
            raise self.in_use(vol, "the volume is already attached")
        if vol.res["zone"]["name"] != zone["name"]:
            raise FakeApiError(400, "validation_failed", f"volume {vol.res['name']} is not in zone {zone['name']}")
        return att, vol

    def _attach(self, inst: Entry, vol: Entry, name: str | None, delete_with_instance: bool) -> dict[str, Any]:
        aid = new_id("0717-")
        device = "0717-" + "-".join(secrets.token_hex(n) for n in (4, 2, 2, 6, 3))  # virtio serial source
        att = {
            "id": aid,
            "href": f"{inst.res['href']}/volume_attachments/{aid}",
            "name": name or f"attachment-{next(self._counter)}",
            "device": {"id": device},
            "volume": self.ref(vol),
            "delete_volume_on_instance_delete": delete_with_instance,
            "type": "boot" if not inst.res["volume_attachments"] else "data",
            "status": "attached",
        }
        inst.res["volume_attachments"].append(att)
        vol.res["volume_attachments"].append(
            {"id": aid, "name": att["name"], "device": att["device"], "instance": self.ref(inst), "type": att["type"]}
        )
        vol.res["attachment_state"] = "attached"
        return {k: att[k] for k in ("id", "href", "name", "device", "volume")}

    def _detach(self, inst: Entry, att: dict[str, Any]) -> None:
        inst.res["volume_attachments"].remove(att)
        vol = self.store.find("volumes", att["volume"]["id"])
        if vol is None:
            return
        vol.res["volume_attachments"] = [a for a in vol.res["volume_attachments"] if a["id"] != att["id"]]
        vol.res["attachment_state"] = "attached" if vol.res["volume_attachments"] else "unattached"
        if att["delete_volume_on_instance_delete"] and inst.status == "deleting":
            self.store.remove(vol)  # goes with the instance: nobody polls it

    def _instance_removed(self, inst: Entry) -> None:
        for att in list(inst.res["volume_attachments"]):
            self._detach(inst, att)
        nic_id = inst.res["primary_network_interface"]["id"]
        for rip in self.store.entries("reserved_ips"):
            if (rip.res.get("target") or {}).get("id") == nic_id:
                rip.res.pop("target")
                if rip.res["auto_delete"]:
                    self.store.remove(rip)
        for fip in self.store.entries("floating_ips"):
            if fip.res.get("target", {}).get("id") == nic_id:
                fip.res.pop("target")

    def instance_action(self, req: Request) -> tuple[int, Any]:
        action = validate_fields(req.body, "instance action", required={"type"}, allowed={"force"})["type"]
        with self.store.lock:
            inst = self.store.get("instances", req.params["inst"])
            if action == "stop":
                self.store.transition(inst, "stopping", "stopped")
            elif action in ("start", "reboot"):
                self.store.transition(inst, "starting", "running")
            else:
                raise FakeApiError(400, "validation_failed", f"instance action type {action!r} is not valid")
        return 201, {"type": action, "status": "pending", "created_at": now_iso(), "id": new_id()}

    # ---------------------------------------------------------------- attachments
    def _attachment(self, inst: Entry, aid: str) -> dict[str, Any]:
        for att in inst.res["volume_attachments"]:
            if att["id"] == aid:
                return att
        raise FakeApiError(404, "not_found", f"volume attachment {aid} cannot be found")

    def list_attachments(self, req: Request) -> tuple[int, Any]:
        inst = self.store.get("instances", req.params["inst"])
        return 200, {"volume_attachments": self.store.public(inst)["volume_attachments"]}

    def get_attachment(self, req: Request) -> tuple[int, Any]:
        with self.store.lock:
            inst = self.store.get("instances", req.params["inst"])
            return 200, dict(self._attachment(inst, req.params["id"]))

    def create_attachment(self, req: Request) -> tuple[int, Any]:
        validate(req.body, M.VolumeAttachmentPrototype, "VolumeAttachmentPrototype")
        with self.store.lock:
            inst = self.store.get("instances", req.params["inst"])
            att_body, vol = self._attachable(req.body, inst.res["zone"], 0)
            out = self._attach(inst, vol, att_body.get("name"), att_body.get("delete_volume_on_instance_delete", False))
        return 201, out

    def delete_attachment(self, req: Request) -> tuple[int, Any]:
        with self.store.lock:
            inst = self.store.get("instances", req.params["inst"])
            att = self._attachment(inst, req.params["id"])
            if att["type"] == "boot":
                raise FakeApiError(409, "boot_volume_detach", "the boot volume attachment cannot be deleted")
            self._detach(inst, att)
        return 202, None

    # ---------------------------------------------------------------- floating IPs
    def create_floating_ips(self, req: Request) -> tuple[int, Any]:
        validate(req.body, M.FloatingIPPrototype, "FloatingIPPrototype")
        body = req.body
        with self.store.lock:
            self.unique("floating_ips", body.get("name"))
            target = None
            if "target" in body:
                nic_id = body["target"].get("id")
                inst = next(
                    (i for i in self.store.entries("instances") if i.res["primary_network_interface"]["id"] == nic_id),
                    None,
                )
                if inst is None:
                    raise FakeApiError(404, "not_found", f"network interface {nic_id} cannot be found")
                nic = inst.res["primary_network_interface"]
                target = {"id": nic_id, "name": nic["name"], "href": nic["href"], "resource_type": "network_interface"}
                zone = inst.res["zone"]
            else:
                zone = self.zone_ref(body.get("zone"))
            n = len(self.store.entries("floating_ips")) + 10
            res = self.base("floating_ips", body, zone=zone["name"]) | {
                "zone": zone,
                "address": f"169.63.{n // 250}.{n % 250}",
            }
            if target:
                res["target"] = target
            entry = self.store.add(Entry("floating_ips", res))
        return 201, self.store.public(entry)

    # ---------------------------------------------------------------- images
    def create_images(self, req: Request) -> tuple[int, Any]:
        variant = validate(req.body, M.ImagePrototype, "ImagePrototype")
        if variant != "ImagePrototypeImageByFile":
            raise FakeApiError(400, "not_supported", "this fake creates images from a file in COS only")
        body = req.body
        href = body["file"]["href"]
        parts = href.removeprefix("cos://").split("/", 2) if href.startswith("cos://") else []
        if len(parts) != 3 or not all(parts):
            raise FakeApiError(400, "validation_failed", f"file.href {href!r} is not cos://<region>/<bucket>/<object>")
        os_name = body["operating_system"].get("name")
        if os_name not in OPERATING_SYSTEMS:
            raise FakeApiError(400, "validation_failed", f"operating system {os_name!r} does not exist")
        if "encrypted_data_key" in body and "encryption_key" not in body:
            raise FakeApiError(400, "validation_failed", "encrypted_data_key needs encryption_key")
        with self.store.lock:
            self.unique("images", body.get("name"))
            res = self.base("images", body) | {
                "visibility": "private",
                "owner_type": "user",
                "operating_system": self._os(os_name),
                "file": {"href": href},
                "encryption": "user_managed" if "encryption_key" in body else "none",
                "status_reasons": [],
            }
            if "encryption_key" in body:
                res["encryption_key"] = body["encryption_key"]
            entry = self.store.add(Entry("images", res, private={"cos": tuple(parts)}))
            if not self.ctx.cos_object_exists(*parts):
                entry.ready_status = "failed"
                res["status_reasons"] = [
                    {"code": "image_data_corrupted", "message": f"The image file {href} could not be read from COS"}
                ]
        return 201, self.store.public(entry)

    # ---------------------------------------------------------------- snapshots
    def create_snapshots(self, req: Request) -> tuple[int, Any]:
        variant = validate(req.body, M.SnapshotPrototype, "SnapshotPrototype")
        if variant != "SnapshotPrototypeSnapshotBySourceVolume":
            raise FakeApiError(400, "not_supported", "this fake takes snapshots of volumes only")
        body = req.body
        with self.store.lock:
            vol = self.resolve("volumes", body["source_volume"], "source_volume")
            # attached to an instance that is running, or stopped (export-instance snapshots a stopped server)
            attached = [
                a
                for a in vol.res["volume_attachments"]
                if (i := self.store.find("instances", a["instance"]["id"])) and i.status in ("running", "stopped")
            ]
            if not attached:
                raise FakeApiError(
                    409,
                    "snapshot_volume_not_attached",
                    f"volume {vol.res['name']} must be attached to a running or stopped instance to take a snapshot",
                )
            self.unique("snapshots", body.get("name"))
            res = self.base("snapshots", body) | {
                "source_volume": self.ref(vol),
                "size": vol.res["capacity"],
                "bootable": False,
                "encryption": vol.res["encryption"],
                "user_tags": list(body.get("user_tags", [])),
                "minimum_capacity": vol.res["capacity"],
                "deletable": True,
            }
            entry = self.store.add(Entry("snapshots", res))
        return 201, self.store.public(entry)

    def check_delete_images(self, image: Entry) -> None:
        if image.private.get("catalog"):
            raise FakeApiError(403, "forbidden", f"public image {image.res['name']} cannot be deleted")
