"""reap-orphans: a deploy whose process is killed right after provisioning leaves its resources;
reap-orphans lists them (dry run), then deletes them, and leaves running builds alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flows.reap_orphans import reap_orphans
from infra.ibmcloud import connect
from infra.ledger import LedgerDocument, file_sink
from infra.secrets import Secret
from tests.fakes.ibmcloud import InstanceView
from tests.support.vsi_emulator import IMAGE, DeploySite
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


def test_a_killed_deploy_is_reaped(deploy_site: DeploySite) -> None:
    from prefect.settings import PREFECT_API_URL

    site = deploy_site
    config = site.config()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, config, IMAGE], cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
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
    assert objects.mover_config_key(IMAGE) not in site.objects()
    (after,) = site.ledgers()
    assert after.status == "failed" and all(e.state == "deleted" for e in after.entries)
    again = reap_orphans(config, dry_run=False, **FAST)  # nothing left: nothing to do
    assert again["orphaned"] == [] and again["deleted"] == []


def test_a_running_build_is_left_alone_and_an_old_unknown_one_is_reaped(deploy_site: DeploySite) -> None:
    site = deploy_site
    config = site.config()
    cloud = connect(parse_config(Path(config).read_text()).target, Secret(site.fake.api_key, "test"))
    running, unknown = "brunning", "bunknown"
    for build in (running, unknown):
        cloud.vpc.create_vpc(resources.name(build, "vpc"))
    file_sink(site.state_dir / "ledger")(LedgerDocument(build_id=running, image=IMAGE, pid=os.getpid()))

    listed = reap_orphans(config, older_than_minutes=60, **FAST)
    assert listed["orphaned"] == []  # the unknown build is younger than an hour

    done = reap_orphans(config, dry_run=False, older_than_minutes=0, **FAST)

    assert done["orphaned"] == [unknown]
    assert done["deleted"] == [f"vpc {resources.name(unknown, 'vpc')}"]
    assert [line.split()[1] for line in site.fake.leftovers()] == [resources.name(running, "vpc")]
    by_build = {row["build"]: row for row in done["builds"]}
    assert by_build[running]["running"] and "process" in by_build[running]["why"]
    cloud.vpc.delete(cloud.vpc.find("vpcs", resources.name(running, "vpc")), timeout=5, poll=0.01)
