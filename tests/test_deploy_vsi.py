"""deploy-image with mover mode vsi, end to end on loopback: staged volumes (dasdinit) → moto S3 →
the stateful IBM Cloud fake (VPC, IAM, Resource Controller) → the mover VSI emulated by running its
user data script here → custom image + snapshot, and nothing else left. Then the faults."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.deploy_image import deploy_image
from infra.ledger import LedgerDocument
from tests.fakes.ibmcloud import FakeIbmCloud, s3_object_checker
from tests.support.s3 import S3Bucket
from tests.support.vsi_emulator import IMAGE, EmulatedVsi, VsiEmulator, site_config
from zimage import objects

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

FAST = {
    "poll_seconds": 0.02, "report_poll_seconds": 0.1, "resource_timeout_minutes": 0.25,
    "publish_timeout_minutes": 0.25, "retry_base_seconds": 0.02, "deadline_minutes": 2.0,
}


class Site:
    def __init__(self, fake: FakeIbmCloud, bucket: S3Bucket, staged: Path, tmp: Path) -> None:
        self.fake, self.bucket, self.staged, self.tmp = fake, bucket, staged, tmp
        self.state_dir = tmp / "state"

    def config(self, mover: dict[str, Any] | None = None, **target: Any) -> str:
        doc = site_config(self.staged, target={
            "region": "jp-tok", "zone": 1, "resource_group": "Default",
            "iam_endpoint": self.fake.url, "vpc_endpoint": self.fake.vpc_url,
            "cos": self.bucket.cos_config(),
            "mover": {"deadline_hours": 1, **(mover or {})},
            **target,
        })
        path = self.tmp / "zimage.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return str(path)

    def deploy(self, config: str | None = None, **options: Any) -> Any:
        return deploy_image(config or self.config(), IMAGE, **{**FAST, **options})

    def objects(self) -> dict[str, int]:
        listing = self.bucket.client().list_objects_v2(Bucket=self.bucket.bucket).get("Contents", [])
        return {o["Key"]: o["Size"] for o in listing}

    def get(self, key: str) -> bytes:
        return self.bucket.client().get_object(Bucket=self.bucket.bucket, Key=key)["Body"].read()

    def ledgers(self) -> list[LedgerDocument]:
        return [LedgerDocument.model_validate_json(p.read_text()) for p in (self.state_dir / "ledger").glob("*.json")]

    def products(self) -> tuple[list[str], list[str]]:
        images = [i["name"] for i in self.fake.resources("images") if i.get("visibility") == "private"]
        return images, [s["name"] for s in self.fake.resources("snapshots")]


@pytest.fixture
def site(
    ibmcloud_fake: FakeIbmCloud, s3_bucket: S3Bucket, staged_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Site:
    site = Site(ibmcloud_fake, s3_bucket, staged_site, tmp_path)
    for name, value in {**s3_bucket.env(), "IBMCLOUD_API_KEY": ibmcloud_fake.api_key,
                        "RESOURCE_CONTROLLER_URL": ibmcloud_fake.url, "ZIMAGE_STATE_DIR": str(site.state_dir)}.items():
        monkeypatch.setenv(name, value)
    ibmcloud_fake.cos_object_check = s3_object_checker(s3_bucket.client())
    ibmcloud_fake.add_image_to_cos_authorization()
    return site


def test_deploy_makes_the_image_and_snapshot_and_leaves_nothing_else(site: Site, vsi_emulator: VsiEmulator) -> None:
    summary = site.deploy()

    assert site.fake.leftovers() == []
    images, snapshots = site.products()
    assert images == [IMAGE] and snapshots == [f"{IMAGE}-data"]
    image = next(i for i in site.fake.resources("images") if i["name"] == IMAGE)
    assert image["status"] == "available"
    assert image["file"]["href"] == f"cos://jp-tok/{site.bucket.bucket}/{IMAGE}.qcow2"
    assert image["operating_system"]["name"] == "zos-2-5-s390x-dev-test-byol"
    assert summary["custom_image"]["id"] == image["id"]
    snapshot = site.fake.resources("snapshots")[0]
    assert snapshot["lifecycle_state"] == "stable" and snapshot["source_volume"]["name"].endswith("-data")
    # the mover really converted: a qcow2 in the bucket, a succeeded report with both volumes
    stored = site.objects()
    assert stored[f"{IMAGE}.qcow2"] > 0
    report = json.loads(site.get(objects.report_key(IMAGE)))
    assert report["status"] == "succeeded" and sorted(report["volumes-succeeded"]) == ["WORK01", "ZRES01"]
    assert objects.mover_config_key(IMAGE) not in stored  # it held live URLs
    assert site.bucket.pending_uploads() == []
    (vsi,) = vsi_emulator.vsis
    assert vsi.returncode == 0, vsi.mover_log
    # every resource went through the ledger, and the ledger says so
    (ledger,) = site.ledgers()
    assert ledger.status == "finished"
    assert {e.kind for e in ledger.entries} == {"vpc", "subnet", "security_group", "key", "volume", "instance"}
    assert all(e.state == "deleted" and e.id for e in ledger.entries)
    assert json.loads(site.get(objects.ledger_key(ledger.build_id)))["status"] == "finished"
    assert len(summary["deleted"]) == len(ledger.entries)
    # teardown order: floating IP, instance, volumes, subnet, security group, key, VPC
    deletes = [r.path.split("/")[2] for r in site.fake.recorded("DELETE", r"^/v1/")]
    assert deletes == ["instances", "volumes", "volumes", "volumes", "subnets", "security_groups", "keys", "vpcs"]
    # request bodies: outbound-only security group, metadata service on, volumes sized per §10
    sg = next(r for r in site.fake.recorded("POST", r"^/v1/security_groups$"))
    assert [rule["direction"] for rule in sg.body["rules"]] == ["outbound"]
    inst = next(r for r in site.fake.recorded("POST", r"^/v1/instances$"))
    assert inst.body["metadata_service"]["enabled"] is True and inst.body["profile"]["name"] == "bx2d-16x64"
    sizes = {r.body["name"].rsplit("-", 1)[1]: r.body["capacity"] for r in site.fake.recorded("POST", r"^/v1/volumes$")}
    assert sizes == {"data": 10, "boot": 10, "qcow2": 15}
    assert not site.fake.recorded("POST", r"^/v1/floating_ips$")
