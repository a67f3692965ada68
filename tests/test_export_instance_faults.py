"""export-instance faults: a create call failing at each step, a cancellation mid-upload, a mover
that fails, the orchestrator killed after provisioning (then reap-orphans). Each ends with a clear
reason and nothing temporary left: no instance, volume, network piece, snapshot, bucket object or
unfinished upload, and no half-written file on the storage server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.support.export_site import COMPONENT, ExportSite
from tests.support.vsi_emulator import REPO, EmulatedVsi

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

STEPS = [
    ("snapshots", "snapshot"),
    ("vpcs", "vpc"),
    ("subnets", "subnet"),
    ("security_groups", "security group"),
    ("keys", "key"),
    ("volumes", "volume"),
    ("instances", "instance"),
]


@pytest.mark.parametrize(("collection", "what"), STEPS, ids=[s[0] for s in STEPS])
def test_a_failing_create_at_each_step_leaves_nothing(export_site: ExportSite, collection: str, what: str) -> None:
    site = export_site
    site.fake.inject("POST", rf"^/v1/{collection}$", 400)
    with pytest.raises(Exception, match=rf"create {what} '?zimage-b[0-9a-f]{{7}}-.*400"):
        site.export()
    site.assert_clean()
    assert site.snapshots() == []
    assert not site.staging().exists() or not list(site.staging().glob(f"{COMPONENT}_*.manifest.json"))
    assert site.emulator.vsis == []


def test_cancelling_mid_upload_aborts_the_uploads_and_tears_everything_down(export_site: ExportSite) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    site = export_site
    site.rebuild(200)  # volumes big enough to be caught in the middle

    def uploading(vsi: EmulatedVsi) -> bool:
        if not any(k.endswith("/progress.json") for k in site.export_objects()):
            return False
        (ledger,) = [d for d in site.ledgers()]
        with get_client(sync_client=True) as client:  # what the UI's cancel button does
            client.set_flow_run_state(ledger.flow_run_id, Cancelling(message="test"), force=True)
        return True  # the VSI hangs from now on: only the teardown ends it

    site.emulator.freeze_when = uploading
    state = site.export(return_state=True)

    assert state.is_cancelled(), state
    site.assert_clean()
    assert site.snapshots() == []
    (vsi,) = site.emulator.vsis
    assert vsi.frozen and vsi.killed


def test_a_volume_the_mover_cannot_read_fails_with_its_reason(export_site: ExportSite) -> None:
    site = export_site
    devmap = site.files["image"]

    def spoil(vsi: EmulatedVsi) -> None:  # the devmap names a volume the data volume lacks
        disk = vsi.root / "zimage-export.disk"
        subprocess.run(["debugfs", "-w", "-R", "rm WORK01", str(disk)], check=True, capture_output=True)

    site.emulator.before_start.append(spoil)
    with pytest.raises(Exception, match=r"devmap device 0A90: /volumes/WORK01 is not a file on the data volume"):
        site.export()
    site.assert_clean()
    assert devmap.exists()


def test_a_devmap_that_does_not_match_the_component_is_refused_before_upload(export_site: ExportSite) -> None:
    site = export_site
    config = site.config(components={COMPONENT: ("sysres", [("ZRES01", "0A80"), ("WORK01", "0A91")])})
    with pytest.raises(Exception, match=r"volume WORK01: device 0A90 in the server's devmap, 0A91 in the config"):
        site.export(config)
    site.assert_clean()
    assert site.snapshots() == []


CHILD = """
import sys
from flows.export_instance import export_instance
export_instance(sys.argv[1], "zdev-1", "zt-all", poll_seconds=0.02, report_poll_seconds=0.1,
                resource_timeout_minutes=0.5, snapshot_timeout_minutes=0.5, retry_base_seconds=0.02)
"""


def test_a_killed_export_is_reaped(export_site: ExportSite) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.reap_orphans import reap_orphans

    site = export_site
    config = site.config()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, config],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = threading.Event()

    def kill(vsi: EmulatedVsi) -> None:  # the orchestrator dies the moment its mover exists
        child.send_signal(signal.SIGKILL)
        killed.set()

    site.emulator.before_start.append(kill)
    output, _ = child.communicate(timeout=240)
    assert killed.is_set() and child.returncode == -signal.SIGKILL, output
    left = site.server.leftovers()
    assert any("-mover " in line for line in left) and any("-export " in line for line in left), left
    assert any(s.endswith("-snap") for s in site.snapshots())

    fast = {"poll_seconds": 0.02, "delete_timeout_minutes": 0.25, "retry_base_seconds": 0.02}
    done = reap_orphans(config, dry_run=False, **fast)

    assert done["deleted"], done
    site.assert_clean()
    assert site.snapshots() == []
