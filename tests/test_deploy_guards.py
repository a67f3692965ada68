"""deploy-image's guards against wrong data and leftovers: another build's report never ends the
wait, a mover that stops writing progress fails the run, two builds of one image never run at
once, a failure right after the mover configuration leaves no upload behind, and bad inputs are
refused before anything is created."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from infra import mover_config
from infra.ledger import LedgerDocument, file_sink
from infra.vpc import VpcError
from tasks.mover_vsi import MoverStalled
from tasks.teardown import ImageBusy
from tests.support.vsi_emulator import IMAGE, DeploySite, EmulatedVsi, VsiEmulator
from zimage import objects, resources

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def assert_clean(site: DeploySite) -> None:
    assert site.fake.leftovers(products=True) == []
    assert site.bucket.pending_uploads() == []
    assert not [k for k in site.objects() if k.endswith(objects.MOVER_CONFIG)]
    for ledger in site.ledgers():
        assert ledger.status == "failed" and all(e.state == "deleted" for e in ledger.entries), ledger.entries


def _put(site: DeploySite, key: str, body: bytes) -> None:
    site.bucket.client().put_object(Bucket=site.bucket.bucket, Key=key, Body=body)


def test_another_builds_report_never_ends_the_wait_and_a_silent_mover_fails_the_run(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator
) -> None:
    site = deploy_site
    done = json.dumps({"status": "succeeded", "build": "b0000001", "totals": {}}).encode()
    seen: dict[str, bytes] = {}

    def earlier_mover(vsi: EmulatedVsi) -> None:
        # an earlier build's mover, still alive, reports where the old per-image layout put it
        _put(site, f"{IMAGE}/report.json", done)
        _put(site, objects.report_key(IMAGE, "b0000001"), done)
        build = resources.build_of(vsi.view.name) or ""
        seen["config"] = site.get(objects.mover_config_key(IMAGE, build))

    vsi_emulator.before_start.append(earlier_mover)
    vsi_emulator.freeze_when = lambda vsi: True  # this build's mover hangs before its first progress

    with pytest.raises(MoverStalled, match=r"has written no progress .* in \d+ s: it did not start, or died"):
        site.deploy(site.config(mover={"ssh_access": True}), stale_minutes=0.05)

    assert_clean(site)
    (ledger,) = site.ledgers()
    assert not (site.state_dir / "keys" / f"{ledger.build_id}.key").exists()  # not asked to keep it
    # the URLs live the run's own deadline (2 min here) plus the provisioning wait and the boot
    doc = json.loads(seen["config"])
    assert doc["build"] == ledger.build_id
    expires = {int(parse_qs(urlsplit(u).query)["X-Amz-Expires"][0]) for u in doc["qcow2"]["part_urls"]}
    assert expires == {2 * 60 + 2 * 15 + mover_config.BOOT_S}


def test_progress_that_is_not_json_is_reported(deploy_site: DeploySite, vsi_emulator: VsiEmulator) -> None:
    site = deploy_site

    def spoil(vsi: EmulatedVsi) -> bool:
        progress = [k for k in site.objects() if k.endswith(objects.PROGRESS)]
        if not progress:
            return False
        _put(site, progress[0], b'{"phase": "conv')
        return True  # and the mover hangs from now on

    vsi_emulator.freeze_when = spoil

    with pytest.raises(MoverStalled, match=r"progress\.json, has been not valid JSON .* for \d+ s"):
        site.deploy(stale_minutes=0.05)

    assert_clean(site)


def test_a_second_build_of_an_image_is_refused_while_one_runs(deploy_site: DeploySite) -> None:
    site = deploy_site
    running = LedgerDocument.here(build_id="b0000002", image=IMAGE)  # this very process: alive
    file_sink(site.state_dir / "ledger")(running)

    with pytest.raises(ImageBusy, match=r"another build of image zos-test may still run.*b0000002.*runs"):
        site.deploy()

    assert [k for k in site.objects() if not k.startswith(objects.LEDGER_PREFIX)] == []  # nothing staged
    assert site.fake.leftovers() == []
    (refused,) = [d for d in site.ledgers() if d.build_id != running.build_id]
    assert refused.status == "failed" and refused.entries == []


def test_a_failure_right_after_the_mover_configuration_leaves_no_upload(deploy_site: DeploySite) -> None:
    site = deploy_site
    site.fake.inject("POST", r"^/v1/instances$", 400)  # the configuration and its upload exist by then

    with pytest.raises(VpcError, match=r"create instance 'zimage-b\w{7}-mover'"):
        site.deploy()

    assert_clean(site)


def test_bad_ssh_from_and_an_unauthorized_cos_instance_are_refused_before_anything(deploy_site: DeploySite) -> None:
    site = deploy_site
    with pytest.raises(ValueError, match=r"ssh_from '10\.0\.0\.1/33' is not an IPv4 CIDR block"):
        site.deploy(ssh_from="10.0.0.1/33")
    assert site.fake.requests == []

    for policy in site.fake.store.entries("policies"):  # only another instance may be read
        site.fake.store.remove(policy)
    site.fake.add_image_to_cos_authorization("00000000-0000-0000-0000-000000000000")
    with pytest.raises(RuntimeError, match=r"may not read the Cloud Object Storage instance cos-test.*nothing was"):
        site.deploy()
    changes = [
        r
        for r in site.fake.requests
        if r.method in ("POST", "DELETE") and r.path.startswith("/v1/") and r.path != "/v1/policies"
    ]
    assert changes == [] and site.objects() == {}
