"""reap-orphans: a deploy whose process is killed right after provisioning leaves its resources;
reap-orphans lists them (dry run), then deletes them. It deletes only what a ledger or a build tag
proves is zimage's, in the config's resource group, and keeps a build whose state nothing can tell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from flows.reap_orphans import reap_orphans
from infra.ibmcloud import IbmCloud, Timing, build_tag, connect
from infra.ledger import Entry, LedgerDocument, boot_id, file_sink
from infra.secrets import Secret
from infra.vpc import Vpc
from tests.fakes.ibmcloud import InstanceView
from tests.support.vsi_emulator import IMAGE, DeploySite, VsiEmulator
from zimage import objects, resources
from zimage.config import parse_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import sys
from flows.deploy_image import deploy_image
deploy_image(sys.argv[1], sys.argv[2], poll_seconds=0.02, report_poll_seconds=0.1, resource_timeout_minutes=0.5,
             retry_base_seconds=0.02)
"""
FAST = {"poll_seconds": 0.02, "delete_timeout_minutes": 0.25, "retry_base_seconds": 0.02}


def _deploy_in_a_child(config: str) -> subprocess.Popen[str]:
    """deploy-image in a process of its own (the test kills it), on the test's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    return subprocess.Popen(
        [sys.executable, "-c", CHILD, config, IMAGE],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_killed_deploy_is_reaped(deploy_site: DeploySite) -> None:
    site = deploy_site
    config = site.config()
    child = _deploy_in_a_child(config)
    killed = threading.Event()

    def kill(view: InstanceView) -> None:  # the process dies the moment its mover exists
        child.send_signal(signal.SIGKILL)
        killed.set()

    site.fake.on_instance_created(kill)
    output, _ = child.communicate(timeout=240)
    assert killed.is_set() and child.returncode == -signal.SIGKILL, output
    left = site.fake.leftovers()
    assert any(" zimage-b" in line and "-mover " in line for line in left), left
    (ledger,) = site.ledgers()
    assert ledger.status == "running" and ledger.flow_run_id

    listed = reap_orphans(config, **FAST)

    assert listed["orphaned"] == [ledger.build_id]
    assert f"instance {resources.name(ledger.build_id, 'mover')}" in listed["would_delete"]
    assert site.fake.leftovers() == left  # a dry run deletes nothing
    assert site.bucket.pending_uploads()  # the killed run's qcow2 upload

    done = reap_orphans(config, dry_run=False, **FAST)

    assert site.fake.leftovers() == []
    assert len(done["deleted"]) >= 7
    assert site.bucket.pending_uploads() == []
    assert objects.mover_config_key(IMAGE, ledger.build_id) not in site.objects()
    (after,) = site.ledgers()
    assert after.status == "failed" and all(e.state == "deleted" for e in after.entries)
    again = reap_orphans(config, dry_run=False, **FAST)  # nothing left: nothing to do
    assert again["orphaned"] == [] and again["deleted"] == []


@pytest.mark.parametrize("snapshot_ready", [False, True], ids=["both importing", "snapshot ready"])
def test_a_deploy_killed_while_publishing_leaves_no_unfinished_product_behind(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator, snapshot_ready: bool
) -> None:
    """Killed while the custom image still imports: reap-orphans deletes the products the ledger holds
    as unfinished, so the re-run's name check passes; a snapshot that was ready (kept, as publish keeps
    a ready product when the other fails) stays."""
    site = deploy_site
    config = site.config()
    site.fake.stick("images", "pending", name=f"^{IMAGE}$")
    if not snapshot_ready:
        site.fake.stick("snapshots", "pending", name=f"^{IMAGE}-data$")

    def killable() -> bool:
        if not site.products()[0]:
            return False
        states = {e.kind: e.state for e in site.ledgers()[0].entries}
        return not snapshot_ready or states.get("snapshot") == "kept"

    child = _deploy_in_a_child(config)
    try:
        deadline = time.monotonic() + 180
        while not killable() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert killable(), child.stdout.read() if child.poll() is not None else "not killable in time"
        child.send_signal(signal.SIGKILL)
    finally:
        output, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, output
    (ledger,) = site.ledgers()
    states = {e.kind: e.state for e in ledger.entries}
    assert states["image"] in ("creating", "created")  # killed at the call or while importing
    assert states["snapshot"] == ("kept" if snapshot_ready else "created")

    done = reap_orphans(config, dry_run=False, **FAST)

    assert done["orphaned"] == [ledger.build_id]
    assert f"image {IMAGE}" in done["deleted"]
    assert (f"snapshot {IMAGE}-data" in done["deleted"]) is not snapshot_ready
    left = [line.split(" (")[0] for line in site.fake.leftovers(products=True)]
    assert left == ([f"snapshots {IMAGE}-data"] if snapshot_ready else [])
    assert site.products() == ([], [f"{IMAGE}-data"] if snapshot_ready else [])
    assert site.bucket.pending_uploads() == []


# --- builds made by hand: a ledger and resources, as a run would have left them ------------------


def _cloud(site: DeploySite, config: str, group: str | None = None) -> IbmCloud:
    target = parse_config(Path(config).read_text()).target
    assert target is not None
    cloud = connect(target, Secret(site.fake.api_key, "test"), timing=Timing.fast())
    if group is not None:
        cloud.vpc = Vpc(
            cloud.vpc.client,
            zone=cloud.vpc.zone,
            resource_group_id=site.fake.resource_groups[group],
            tags=cloud.vpc.tags,
            retry=cloud.vpc.retry,
            poll_interval=0.01,
        )
    return cloud


def _ledger(site: DeploySite, build: str, entries: list[Entry], **fields: object) -> LedgerDocument:
    """A ledger as the run's bucket sink writes it (another machine's unless fields say otherwise)."""
    doc = LedgerDocument(
        build_id=build, image=IMAGE, host="elsewhere", boot_id=str(uuid.uuid4()), pid=1, entries=entries, **fields
    )  # type: ignore[arg-type]
    site.bucket.client().put_object(
        Bucket=site.bucket.bucket, Key=objects.ledger_key(build), Body=doc.model_dump_json().encode()
    )
    return doc


def _entry(kind: str, res: object) -> Entry:
    return Entry(kind=kind, name=res.name, id=res.id, state="created")  # type: ignore[attr-defined]


def test_only_what_a_ledger_or_a_build_tag_proves_is_deleted(deploy_site: DeploySite) -> None:
    site = deploy_site
    config = site.config()
    cloud = _cloud(site, config)
    vpc = cloud.vpc
    users = [vpc.create_vpc("zimage-frontend-vpc"), vpc.create_vpc("zimage-b1234567-vpc")]  # no ledger, no tag
    vpc.tags = ["zimage", build_tag("b7654321")]
    tagged = vpc.create_volume(resources.name("b7654321", "data"), 10)  # no ledger, but the build tag
    elsewhere = _cloud(site, config, group="zimage")  # the same names in another resource group
    elsewhere.vpc.tags = vpc.tags
    foreign = elsewhere.vpc.create_volume("zimage-b7654321-boot", 10)

    listed = reap_orphans(config, older_than_minutes=0, **FAST)

    by_build = {row["build"]: row for row in listed["builds"]}
    assert set(by_build) == {"b1234567", "b7654321"}  # zimage-frontend-vpc is no build's name
    assert by_build["b1234567"]["running"] and "nothing proves" in by_build["b1234567"]["why"]
    assert by_build["b1234567"]["not ours"] == "zimage-b1234567-vpc"
    assert listed["would_delete"] == [f"volume {tagged.name}"]

    done = reap_orphans(config, dry_run=False, older_than_minutes=0, **FAST)

    assert done["deleted"] == [f"volume {tagged.name}"]
    left = sorted(line.split()[1] for line in site.fake.leftovers())
    assert left == ["zimage-b1234567-vpc", "zimage-b7654321-boot", "zimage-frontend-vpc"]
    vpc.teardown(users, timeout=5, poll=0.01)
    elsewhere.vpc.teardown([foreign], timeout=5, poll=0.01)


def test_a_build_nothing_can_judge_is_kept_unless_older_than_is_given(deploy_site: DeploySite) -> None:
    site = deploy_site
    config = site.config()
    vpc = _cloud(site, config).vpc
    net = vpc.create_vpc(resources.name("b0000aaa", "vpc"))
    # written on another machine, by a flow run this Prefect API does not know (an ephemeral API's)
    _ledger(site, "b0000aaa", [_entry("vpc", net)], flow_run_id=str(uuid.uuid4()))

    kept = reap_orphans(config, dry_run=False, **FAST)

    assert kept["orphaned"] == [] and kept["deleted"] == []
    (row,) = kept["builds"]
    assert row["running"] and "unknown whether it runs" in row["why"] and "older_than_minutes" in row["why"]
    assert vpc.find("vpcs", net.name) is not None

    aged = reap_orphans(config, dry_run=False, older_than_minutes=0, **FAST)

    assert aged["deleted"] == [f"vpc {net.name}"]
    assert site.fake.leftovers() == []


def test_a_build_whose_flow_run_ended_is_reaped_and_a_live_local_one_is_not(deploy_site: DeploySite) -> None:
    from prefect import flow

    @flow(name="ended-build")
    def ended() -> str:
        from prefect.runtime import flow_run

        return str(flow_run.id)

    site = deploy_site
    config = site.config()
    vpc = _cloud(site, config).vpc
    dead, live = vpc.create_vpc(resources.name("b0000dea", "vpc")), vpc.create_vpc(resources.name("b0000a11", "vpc"))
    _ledger(site, "b0000dea", [_entry("vpc", dead)], flow_run_id=ended())  # another machine; its run completed
    here = LedgerDocument.here(build_id="b0000a11", image="zos-other", entries=[_entry("vpc", live)])
    assert here.boot_id == boot_id() and here.pid == os.getpid()
    file_sink(site.state_dir / "ledger")(here)

    done = reap_orphans(config, dry_run=False, older_than_minutes=0, **FAST)

    assert done["orphaned"] == ["b0000dea"] and done["deleted"] == [f"vpc {dead.name}"]
    by_build = {row["build"]: row for row in done["builds"]}
    assert "flow run ended (completed)" in by_build["b0000dea"]["why"]
    assert by_build["b0000a11"]["running"] and "this machine runs" in by_build["b0000a11"]["why"]
    assert [line.split()[1] for line in site.fake.leftovers()] == [live.name]
    vpc.teardown([live], timeout=5, poll=0.01)


def test_unfinished_products_of_a_dead_build_are_reaped_kept_ones_never(deploy_site: DeploySite) -> None:
    """A crash during publish: the image still importing and its snapshot are in the ledger."""
    site = deploy_site
    config = site.config()
    cloud = _cloud(site, config)
    vpc = cloud.vpc
    site.fake.stick("images", "pending", name="^zos-test$")
    helper_net = vpc.create_vpc("helper")
    vpc.wait_ready(helper_net, timeout=5, poll=0.01)
    subnet = vpc.create_subnet("helper-subnet", helper_net.id)
    vpc.wait_ready(subnet, timeout=5, poll=0.01)
    sg = vpc.create_security_group("helper-sg", helper_net.id)
    data = vpc.create_volume(resources.name("b0000cab", "data"), 10)
    vpc.wait_ready(data, timeout=5, poll=0.01)
    inst = vpc.create_instance(
        resources.name("b0000cab", "mover"),
        subnet_id=subnet.id,
        security_group_id=sg.id,
        image_id=vpc.newest_image("ubuntu-22-04").id,
        profile="bx2-2x8",
        user_data="",
        data_volumes={"data": data.id},
    )
    vpc.wait_ready(inst, timeout=5, poll=0.01)
    snap = vpc.create_snapshot(data.id, f"{IMAGE}-data")
    image = vpc.create_image(IMAGE, f"cos://jp-tok/{site.bucket.bucket}/x.qcow2", "zos-2-5-s390x-dev-test-byol")
    old = vpc.create_image("zos-old", f"cos://jp-tok/{site.bucket.bucket}/y.qcow2", "zos-2-5-s390x-dev-test-byol")
    entries = [_entry("volume", data), _entry("instance", inst), _entry("snapshot", snap), _entry("image", image)]
    _ledger(site, "b0000cab", entries, status="failed")
    _ledger(site, "b0000014", [_entry("image", old).model_copy(update={"state": "kept"})], status="failed")

    listed = reap_orphans(config, **FAST)

    assert listed["orphaned"] == ["b0000cab"]  # the ledger of b0000014 holds only a kept product
    assert {f"image {IMAGE}", f"snapshot {IMAGE}-data"} <= set(listed["would_delete"])

    done = reap_orphans(config, dry_run=False, **FAST)

    assert {f"image {IMAGE}", f"snapshot {IMAGE}-data", f"instance {inst.name}"} <= set(done["deleted"])
    assert [i["name"] for i in site.fake.resources("images") if i.get("visibility") == "private"] == ["zos-old"]
    assert site.fake.resources("snapshots") == []
    vpc.teardown([sg, subnet, helper_net], timeout=5, poll=0.01)
    assert [line.split()[:2] for line in site.fake.leftovers(products=True)] == [["images", "zos-old"]]
    ledger = json.loads(site.get(objects.ledger_key("b0000cab")))
    assert {e["kind"]: e["state"] for e in ledger["entries"]} == {
        "volume": "deleted",
        "instance": "deleted",
        "snapshot": "deleted",
        "image": "deleted",
    }
