"""deploy-image with mover mode vsi, end to end on loopback: staged volumes (dasdinit) → moto S3 →
the stateful IBM Cloud fake (VPC, IAM, Resource Controller) → the mover VSI emulated by running its
user data script here → custom image + snapshot, and nothing else left. Then the faults."""

from __future__ import annotations

import json
import logging
import stat
from datetime import UTC, datetime

import pytest

from tests.support.vsi_emulator import IMAGE, DeploySite, VsiEmulator
from zimage import objects, resources
from zimage.host_symbols import LEFT_TO_WAZI

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_deploy_makes_the_image_and_snapshot_and_leaves_nothing_else(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator
) -> None:
    site = deploy_site
    summary = site.deploy()

    assert summary["network_symbols"] == LEFT_TO_WAZI and summary["deployed_sha256"] == {}
    assert site.fake.leftovers() == []
    images, snapshots = site.products()
    assert images == [IMAGE] and snapshots == [f"{IMAGE}-data"]
    image = next(i for i in site.fake.resources("images") if i["name"] == IMAGE)
    assert image["status"] == "available"
    build = summary["build_id"]
    assert image["file"]["href"] == f"cos://jp-tok/{site.bucket.bucket}/{objects.qcow2_key(IMAGE, build)}"
    assert image["operating_system"]["name"] == "zos-2-5-s390x-dev-test-byol"
    assert summary["custom_image"]["id"] == image["id"]
    snapshot = site.fake.resources("snapshots")[0]
    assert snapshot["lifecycle_state"] == "stable" and snapshot["source_volume"]["name"].endswith("-data")
    # the mover really converted: a qcow2 in the bucket, a succeeded report with both volumes
    stored = site.objects()
    assert stored[f"{IMAGE}/builds/{build}/{IMAGE}.qcow2"] > 0
    report = json.loads(site.get(objects.report_key(IMAGE, build)))
    assert report["status"] == "succeeded" and sorted(report["volumes-succeeded"]) == ["WORK01", "ZRES01"]
    assert report["build"] == build  # the mover echoes the build it works for
    assert objects.mover_config_key(IMAGE, build) not in stored  # it held live URLs
    assert site.bucket.pending_uploads() == []
    (vsi,) = vsi_emulator.vsis
    assert vsi.returncode == 0, vsi.mover_log
    # every resource went through the ledger, and the ledger says so
    (ledger,) = site.ledgers()
    assert ledger.status == "finished"
    kinds = {"vpc", "subnet", "security_group", "key", "volume", "instance"}
    assert {e.kind for e in ledger.entries} == kinds | {"image", "snapshot"}
    assert all(e.state == "deleted" and e.id for e in ledger.entries if e.kind in kinds)
    assert all(e.state == "kept" and e.id for e in ledger.entries if e.kind not in kinds)  # the products
    assert json.loads(site.get(objects.ledger_key(ledger.build_id)))["status"] == "finished"
    assert len(summary["deleted"]) == len(ledger.entries) - 2
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


def test_no_secret_reaches_the_vsi_the_bucket_the_ledger_artifacts_or_logs(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """With SSH access and a customer root key: the only key material that leaves the run is the
    mover's private key, kept 0600 in the state directory."""
    from prefect.client.orchestration import get_client

    site = deploy_site
    seen: dict[str, bytes] = {}
    vsi_emulator.before_start.append(lambda vsi: seen.update(
        config=site.get(objects.mover_config_key(IMAGE, resources.build_of(vsi.view.name) or ""))))
    crk = "crn:v1:bluemix:public:kms:jp-tok:a/0123456789abcdef:keyring:key:0001"
    caplog.set_level(logging.INFO)
    for package in ("infra", "tasks", "flows"):  # botocore's own DEBUG lines trip over moto's headers
        caplog.set_level(logging.DEBUG, logger=package)
    started = datetime.now(UTC)

    summary = site.deploy(site.config(mover={"ssh_access": True}, encryption_key_crn=crk), keep_mover_key=True)

    assert site.fake.leftovers() == []
    (vsi,) = vsi_emulator.vsis
    key_file = site.state_dir / "keys" / f"{summary['build_id']}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = key_file.read_text()
    assert "PRIVATE KEY" in private
    fip = site.fake.recorded("POST", r"^/v1/floating_ips$")
    assert len(fip) == 1 and fip[0].status == 201
    sg = site.fake.recorded("POST", r"^/v1/security_groups$")[0].body
    assert [(r["direction"], r.get("port_min")) for r in sg["rules"]] == [("outbound", None), ("inbound", 22)]
    volumes = [r.body for r in site.fake.recorded("POST", r"^/v1/volumes$")]
    assert all(v["encryption_key"] == {"crn": crk} for v in volumes)
    mover_config = json.loads(seen["config"])
    assert mover_config["qcow2"]["type"] == "multipart" and "s3" not in mover_config
    with get_client(sync_client=True) as client:
        artifacts = [f"{a.key} {a.description} {a.data}" for a in client.read_artifacts()
                     if a.created and a.created >= started]
        logs = [log.message for log in client.read_logs()]
    haystacks = {
        "user data": vsi.view.user_data or "",
        "mover configuration": seen["config"].decode(),
        "ledger": "".join(p.read_text() for p in (site.state_dir / "ledger").glob("*.json"))
        + site.get(objects.ledger_key(summary["build_id"])).decode(),
        "artifacts": "\n".join(artifacts),
        "logs": caplog.text + "\n".join(logs) + vsi.output + vsi.mover_log,
    }
    assert artifacts and logs
    secrets = {"API key": site.fake.api_key, "HMAC secret": site.bucket.secret_access_key,
               "private key": private.splitlines()[1]}
    for where, text in haystacks.items():
        for what, value in secrets.items():
            assert value not in text, f"the {what} is in the {where}"
