"""deploy-image (mover mode vsi) under faults: each test asserts that no temporary resource is
left and that the error says what went wrong."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from infra.ibmcloud import connect
from infra.secrets import Secret
from infra.vpc import VpcError
from tasks.mover_vsi import MoverFailed
from tasks.publish import NameTaken
from tests.support.vsi_emulator import IMAGE, DeploySite, EmulatedVsi, VsiEmulator
from zimage import objects
from zimage.config import parse_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def assert_clean(site: DeploySite, products: bool = False) -> None:
    assert site.fake.leftovers() == []
    assert site.products() == (([IMAGE], [f"{IMAGE}-data"]) if products else ([], []))
    assert site.bucket.pending_uploads() == []
    assert not [k for k in site.objects() if k.endswith(objects.MOVER_CONFIG)]
    for ledger in site.ledgers():
        assert all(e.state in ("deleted", "kept") for e in ledger.entries), ledger.entries
        assert products or all(e.state == "deleted" for e in ledger.entries), ledger.entries


def test_5xx_and_429_answers_are_retried(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator
) -> None:
    site = deploy_site
    fake = site.fake
    fake.inject("POST", r"^/v1/vpcs$", 503)  # refused: tried again
    fake.inject("POST", r"^/v1/instances$", 502, after=True)  # made, but the answer was lost
    fake.inject("GET", r"^/v1/volumes/", 429, times=2, retry_after=0.05)
    fake.inject("DELETE", r"^/v1/subnets/", 500)
    fake.inject("POST", r"^/v1/snapshots$", 503)

    summary = site.deploy()

    assert summary["custom_image"]["name"] == IMAGE
    assert_clean(site, products=True)
    statuses = [r.status for r in fake.requests]
    assert {503, 502, 429, 500} <= set(statuses)
    assert len(fake.resources("snapshots")) == 1
    assert len(vsi_emulator.vsis) == 1  # the lost answer did not make a second mover


def test_a_resource_stuck_pending_fails_at_its_deadline_and_everything_goes(deploy_site: DeploySite) -> None:
    site = deploy_site
    site.fake.stick("subnets", "pending")

    with pytest.raises(VpcError, match=r"subnet zimage-b\w{7}-subnet .*still pending"):
        site.deploy(resource_timeout_minutes=0.02)

    assert_clean(site)
    (ledger,) = site.ledgers()
    assert ledger.status == "failed" and [e.kind for e in ledger.entries] == ["vpc", "subnet"]


def test_a_volume_the_mover_fails_fails_the_flow_with_its_error(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator
) -> None:
    site = deploy_site

    def spoil(vsi: EmulatedVsi) -> None:  # the staged WORK01 no longer matches its recorded digest
        key = next(k for k in site.objects() if k.startswith(objects.volumes_prefix(IMAGE) + "WORK01_"))
        site.bucket.client().put_object(Bucket=site.bucket.bucket, Key=key, Body=gzip.compress(b"\0" * 4096))

    vsi_emulator.before_start.append(spoil)

    with pytest.raises(MoverFailed, match=r"data mover on zimage-b\w{7}-mover failed: .*WORK01"):
        site.deploy(deadline_minutes=0.5)

    assert_clean(site)
    (ledger,) = site.ledgers()
    report = json.loads(site.get(objects.report_key(IMAGE, ledger.build_id)))
    assert report["status"] == "failed" and report["volumes-failed"] == ["WORK01"]


def test_cancelling_the_flow_mid_conversion_tears_everything_down(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator
) -> None:
    site = deploy_site

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    def converting(vsi: EmulatedVsi) -> bool:
        if not [k for k in site.objects() if k.endswith(objects.PROGRESS)]:
            return False
        (ledger,) = site.ledgers()
        with get_client(sync_client=True) as client:  # what the UI's cancel button does
            client.set_flow_run_state(ledger.flow_run_id, Cancelling(message="test"), force=True)
        return True  # and the VSI hangs from now on: only the teardown ends it

    vsi_emulator.freeze_when = converting

    state = site.deploy(return_state=True)

    assert state.is_cancelled(), state
    assert_clean(site)
    (vsi,) = vsi_emulator.vsis
    assert vsi.frozen and vsi.killed


def test_a_taken_name_is_reported_before_anything_is_created(deploy_site: DeploySite) -> None:
    site = deploy_site
    cfg = parse_config(Path(site.config()).read_text())
    cloud = connect(cfg.target, Secret(site.fake.api_key, "test"))
    cloud.vpc.create_image(IMAGE, "cos://jp-tok/other/old.qcow2", "zos-2-5-s390x-dev-test-byol")
    site.fake.requests.clear()

    with pytest.raises(NameTaken, match=rf"custom image named '{IMAGE}' already exist.*images\[0\]\.name"):
        site.deploy()

    changes = [r for r in site.fake.requests if r.method in ("POST", "DELETE") and r.path != "/identity/token"]
    assert changes == []
    assert site.objects() == {}  # not even staged
    assert site.fake.leftovers() == []
