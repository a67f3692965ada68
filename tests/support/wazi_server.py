"""A Wazi aaS server in the IBM Cloud fake, as a customer's account holds one: an s390x instance
from a z/OS image with a data volume (attachment `zvolumes`), in its own VPC. It is made through
the real SDK over HTTP, as zimage's create-instance would make it, and is not temporary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from infra.ibmcloud import create_instance_from_prototype
from infra.vpc import Resource, Vpc, vpc_client
from tests.fakes.ibmcloud import FakeIbmCloud

ZOS_IMAGE = "ibm-zos-2-5-s390x-dev-test-wazi-7"


@dataclass
class WaziServer:
    fake: FakeIbmCloud
    name: str
    id: str
    data_volume_id: str
    existing: set[str]  # ids of the fake's temporary-kind resources once the server exists (not leftovers)

    def status(self) -> str:
        return self.fake.store.get("instances", self.id).status or ""

    def actions(self) -> list[str]:
        return [r.body["type"] for r in self.fake.recorded("POST", rf"^/v1/instances/{self.id}/actions$")]

    def leftovers(self) -> list[str]:
        """What the fake holds beyond the server and its own resources."""
        return [line for line in self.fake.leftovers() if _id_of(line) not in self.existing]


def _id_of(line: str) -> str:
    return line.split("(", 1)[1].split(")", 1)[0]


def make_server(fake: FakeIbmCloud, name: str = "zdev-1", data_gb: int = 10) -> WaziServer:
    vpc = Vpc(
        vpc_client(fake.api_key, fake.region, iam_endpoint=fake.url, vpc_endpoint=fake.vpc_url),
        zone=f"{fake.region}-1",
        poll_interval=0.02,
    )
    net = vpc.create_vpc(f"{name}-vpc")
    subnet = vpc.create_subnet(f"{name}-subnet", net.id)
    vpc.wait_ready(subnet, timeout=10)
    image = vpc.find("images", ZOS_IMAGE)
    assert image is not None
    proto: dict[str, Any] = {
        "name": name,
        "zone": {"name": f"{fake.region}-1"},
        "image": {"id": image.id},
        "profile": {"name": "mz2o-2x16"},
        "primary_network_interface": {"name": "eth0", "subnet": {"id": subnet.id}},
        "volume_attachments": [
            {
                "name": "zvolumes",
                "volume": {"name": f"{name}-data", "capacity": data_gb, "profile": {"name": "general-purpose"}},
                "delete_volume_on_instance_delete": False,
            }
        ],
    }
    inst = create_instance_from_prototype(vpc, name, proto)
    ready = vpc.wait_ready(Resource(kind="instances", id=inst.id, name=name), timeout=10)
    data = next(a for a in ready["volume_attachments"] if a["name"] == "zvolumes")
    return WaziServer(fake, name, inst.id, data["volume"]["id"], {_id_of(line) for line in fake.leftovers()})


@pytest.fixture
def wazi_server(ibmcloud_fake: FakeIbmCloud) -> WaziServer:
    return make_server(ibmcloud_fake)
