"""create-instance against the IBM Cloud fake: a z/OS custom image on an s390x profile with a data
volume restored from the snapshot; a failure half-way deletes what the run created."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.create_instance import InstanceSetupError, create_instance
from infra.ibmcloud import IbmCloud, Timing, connect
from infra.secrets import Secret
from tests.fakes.ibmcloud import FakeIbmCloud
from tests.support.vsi_emulator import site_config
from zimage.config import parse_config

pytestmark = pytest.mark.usefixtures("prefect_harness")

IMAGE = "zos25-dev"
FAST = {"poll_seconds": 0.02, "timeout_minutes": 0.2, "retry_base_seconds": 0.02}
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx5W9zTqfl2cJ0CwHvYtHx8w2n0sJ0P2Y2Rk7M8x2eA user"


class Account:
    """A fake account holding a deployed image and snapshot, and a network to put servers on."""

    def __init__(self, fake: FakeIbmCloud, tmp: Path) -> None:
        target = {"region": "jp-tok", "zone": 1, "iam_endpoint": fake.url, "vpc_endpoint": fake.vpc_url,
                  "insecure_http": True,
                  "cos": {"instance_name": "cos-wazi", "bucket": "wazi-images", "region": "jp-tok"}}
        doc = site_config(tmp, target=target)
        doc["images"][0]["name"] = IMAGE
        self.config = tmp / "zimage.yaml"
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.cloud: IbmCloud = connect(parse_config(self.config.read_text()).target, Secret(fake.api_key, "test"),
                                       timing=Timing.fast())
        vpc = self.cloud.vpc
        self.network = [vpc.create_vpc("wazi-vpc")]
        vpc.wait_ready(self.network[0], timeout=5, poll=0.01)
        self.subnet = vpc.create_subnet("wazi-subnet", self.network[0].id)
        vpc.wait_ready(self.subnet, timeout=5, poll=0.01)
        self.key = vpc.create_key("wazi-key", PUBLIC_KEY)
        self.network += [self.subnet, self.key]
        self._products(vpc)

    def _products(self, vpc: Any) -> None:
        # a snapshot needs its volume attached to a running instance: a short-lived helper server
        sg = vpc.create_security_group("helper-sg", self.network[0].id)
        vol = vpc.create_volume("helper-data", 22)
        vpc.wait_ready(vol, timeout=5, poll=0.01)
        helper = vpc.create_instance(
            "helper", subnet_id=self.subnet.id, security_group_id=sg.id, profile="bx2-2x8", user_data="",
            image_id=vpc.newest_image(r"ubuntu-22-04").id, data_volumes={"data": vol.id},
        )
        vpc.wait_ready(helper, timeout=5, poll=0.01)
        vpc.wait_ready(vpc.create_snapshot(vol.id, f"{IMAGE}-data"), timeout=5, poll=0.01)
        image = vpc.create_image(IMAGE, f"cos://jp-tok/wazi-images/{IMAGE}.qcow2", "zos-2-5-s390x-dev-test-byol")
        vpc.wait_ready(image, timeout=5, poll=0.01)
        vpc.teardown([helper, vol, sg], timeout=5, poll=0.01)

    def remove(self, *extra: Any) -> None:
        self.cloud.vpc.teardown([*extra, *self.network], timeout=5, poll=0.01)


@pytest.fixture
def account(ibmcloud_fake: FakeIbmCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    monkeypatch.setenv("IBMCLOUD_API_KEY", ibmcloud_fake.api_key)
    monkeypatch.setenv("RESOURCE_CONTROLLER_URL", ibmcloud_fake.url)
    yield Account(ibmcloud_fake, tmp_path)


def test_a_wazi_instance_boots_the_image_with_the_restored_data_volume(
    account: Account, ibmcloud_fake: FakeIbmCloud
) -> None:
    summary = create_instance(str(account.config), IMAGE, "wazi-dev-1", subnet="wazi-subnet", ssh_key=account.key.id,
                              reserved_ip="10.1.0.20", **FAST)

    (inst,) = [i for i in ibmcloud_fake.resources("instances") if i["name"] == "wazi-dev-1"]
    assert inst["status"] == "running" and inst["profile"]["name"] == "mz2o-2x16"
    assert inst["image"]["name"] == IMAGE and inst["vcpu"]["architecture"] == "s390x"
    assert summary["instance"]["id"] == inst["id"] and summary["data_volume"] == "wazi-dev-1-data"
    (body,) = [r.body for r in ibmcloud_fake.recorded("POST", r"^/v1/instances$") if r.body["name"] == "wazi-dev-1"]
    snapshot = ibmcloud_fake.resources("snapshots")[0]
    (data,) = body["volume_attachments"]
    assert data["volume"]["source_snapshot"] == {"id": snapshot["id"]}
    assert data["volume"]["capacity"] == snapshot["minimum_capacity"] == 22
    assert body["keys"] == [{"id": account.key.id}]
    assert body["primary_network_interface"]["primary_ip"]["address"] == "10.1.0.20"
    # the server, its volumes and its reserved IP are the product: still there; the test cleans up after itself
    vpc = account.cloud.vpc
    server = vpc.find("instances", "wazi-dev-1")
    (ip,) = ibmcloud_fake.resources("reserved_ips")
    assert ip["address"] == "10.1.0.20" and ip["name"] == "wazi-dev-1-ip" and not ip["auto_delete"]
    vpc.teardown([server, vpc.find("volumes", "wazi-dev-1-data")], timeout=5, poll=0.01)
    assert vpc.delete_reserved_ip(account.subnet.id, ip["id"])
    account.remove()
    assert ibmcloud_fake.leftovers() == []


def test_a_server_that_never_runs_is_deleted_with_its_volume_and_reserved_ip(
    account: Account, ibmcloud_fake: FakeIbmCloud
) -> None:
    ibmcloud_fake.stick("instances", "pending", name="^wazi-dev-2$")
    ibmcloud_fake.lag_lists(30)  # what the run made is not in any list yet: the undo goes by ids

    with pytest.raises(InstanceSetupError, match=r"wazi-dev-2 failed: .*still pending.*deleted again: instance"):
        create_instance(str(account.config), IMAGE, "wazi-dev-2", subnet=account.subnet.id, ssh_key="wazi-key",
                        reserved_ip="10.1.0.21", **{**FAST, "timeout_minutes": 0.02})

    names = [line.split()[1] for line in ibmcloud_fake.leftovers()]
    assert not [n for n in names if n.startswith("wazi-dev-2")], names
    assert ibmcloud_fake.resources("reserved_ips") == []  # made with auto_delete false: deleted by the undo
    ibmcloud_fake.lag_lists(0)
    account.remove()
    assert ibmcloud_fake.leftovers() == []


def test_a_kept_data_volume_of_the_same_name_is_never_deleted(account: Account, ibmcloud_fake: FakeIbmCloud) -> None:
    # a server deleted with its data volume kept: the volume holds that server's data
    vpc = account.cloud.vpc
    kept = vpc.create_volume("wazi-dev-4-data", 30)
    vpc.wait_ready(kept, timeout=5, poll=0.01)
    ibmcloud_fake.requests.clear()

    with pytest.raises(InstanceSetupError, match=r"data volume named 'wazi-dev-4-data'.*nothing was created"):
        create_instance(str(account.config), IMAGE, "wazi-dev-4", subnet="wazi-subnet", ssh_key="wazi-key",
                        reserved_ip="10.1.0.22", **FAST)

    assert vpc.get(kept)["status"] == "available"  # still there
    changes = [r for r in ibmcloud_fake.requests if r.method in ("POST", "DELETE") and r.path != "/identity/token"]
    assert changes == []
    account.remove(kept)
    assert ibmcloud_fake.leftovers() == []


def test_every_name_the_run_would_create_is_checked_first(account: Account, ibmcloud_fake: FakeIbmCloud) -> None:
    vpc = account.cloud.vpc
    kept = vpc.create_volume("wazi-dev-6-boot", 10)  # not a volume of ours: reported, not reused or deleted
    with pytest.raises(InstanceSetupError, match=r"boot volume named 'wazi-dev-6-boot'"):
        create_instance(str(account.config), IMAGE, "wazi-dev-6", subnet="wazi-subnet", ssh_key="wazi-key", **FAST)
    assert vpc.find("instances", "wazi-dev-6") is None
    account.remove(kept)
    assert ibmcloud_fake.leftovers() == []
