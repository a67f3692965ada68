"""deploy-image with mover mode vsi, end to end on loopback: staged volumes (dasdinit) → moto S3 →
the stateful IBM Cloud fake (VPC, IAM, Resource Controller) → the mover VSI emulated by running its
user data script here → custom image + snapshot, and nothing else left. Then the faults."""

from __future__ import annotations

import json

import pytest

from tests.support.vsi_emulator import IMAGE, DeploySite, VsiEmulator
from zimage import objects

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_deploy_makes_the_image_and_snapshot_and_leaves_nothing_else(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator
) -> None:
    site = deploy_site
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
