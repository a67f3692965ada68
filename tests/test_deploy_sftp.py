"""deploy-image with the staging server reached over sftp (a real sshd): every connection is
dropped in the middle of the copy to the bucket, and the run resumes and finishes clean."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.sshd import Sshd
from tests.support.volumes import dasd_volume, synthetic_volume
from tests.support.vsi_emulator import IMAGE, DeploySite, VsiEmulator, extract_all, site_config
from zimage import objects

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

CYLINDERS = 30  # 25 MB: incompressible, so the copy takes several parts
BIG = {"zt-sysres": ("sysres", [("ZRES01", "0A80")]), "zt-data": ("volumes", [("RAND01", "0A90")])}


def sftp_site(sshd: Sshd, root: Path, stage_path: str = "auto") -> dict[str, Any]:
    return {
        "storage": {**sshd.endpoint(root=str(root / "staging")), "stage_path": stage_path},
        "agent_options": f" --identity {sshd.client_key} --known-hosts {sshd.known_hosts}",
        "volumes": BIG,
        "cylinders": CYLINDERS,
    }


@pytest.fixture(scope="module")
def staged_site(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None, sshd: Sshd) -> Path:
    """This module's own staged site: one random volume, extracted over sftp to the sshd."""
    root = tmp_path_factory.mktemp("sftp-site")
    (root / "source").mkdir()
    (root / "staging").mkdir()
    dasd_volume(root / "source" / "ZRES01.ckd", "ZRES01", cylinders=CYLINDERS)
    synthetic_volume(root / "source" / "RAND01.ckd", CYLINDERS * 15 * 56664, seed=7, random_share=1.0)
    target = {"region": "jp-tok", "zone": 1, "cos": {"instance_name": "c", "bucket": "unused", "region": "jp-tok"}}
    path = root / "extract.yaml"
    path.write_text(yaml.safe_dump(site_config(root, target=target, **sftp_site(sshd, root)), sort_keys=False))
    extract_all(path, BIG)
    return root


@pytest.mark.parametrize("stage_path", ["relay", "direct"])
def test_an_sftp_drop_mid_upload_is_resumed(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator, sshd: Sshd, stage_path: str
) -> None:
    """relay: this machine reads over sftp and uploads; direct: the storage server uploads itself."""
    site = deploy_site
    key = objects.volume_key(IMAGE, "RAND01_2024-06-01_10_00_00.gz")
    dropped: list[int] = []
    stop = threading.Event()

    def drop_when_a_part_is_in() -> None:  # cut every connection once the first part has landed
        client = site.bucket.client()
        while not stop.is_set() and not dropped:
            for upload in client.list_multipart_uploads(Bucket=site.bucket.bucket).get("Uploads", []):
                parts = client.list_parts(Bucket=site.bucket.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                if upload["Key"] == key and parts.get("Parts"):
                    dropped.append(sshd.kill_sessions())
            stop.wait(0.01)

    def drop_while_the_storage_server_uploads() -> None:  # its uploads are too quick to see a part first
        while not stop.is_set() and not dropped:
            if subprocess.run(["pgrep", "-f", "zimage-stage"], capture_output=True).returncode == 0:
                stop.wait(0.05)
                dropped.append(sshd.kill_sessions())
            stop.wait(0.005)

    watcher = threading.Thread(
        target=drop_when_a_part_is_in if stage_path == "relay" else drop_while_the_storage_server_uploads, daemon=True
    )
    watcher.start()
    try:
        summary = site.deploy(site.config(site=sftp_site(sshd, site.staged, stage_path)))
    finally:
        stop.set()
        watcher.join(5)

    assert dropped and dropped[0] > 0, "the connections were never dropped"
    staged = {s["volser"]: s for s in summary["staged"]}
    assert staged["RAND01"]["bytes"] > 2 * 8 * 2**20 and not staged["RAND01"]["skipped"]
    assert {s["path"] for s in summary["staged"]} == {stage_path}
    left = subprocess.run(["pgrep", "-af", "zimage-stage"], capture_output=True, text=True).stdout
    assert left == "", left  # the storage server's mover stopped with its connection
    assert site.fake.leftovers() == []
    assert site.products() == ([IMAGE], [f"{IMAGE}-data"])
    assert site.bucket.pending_uploads() == []
    (vsi,) = vsi_emulator.vsis
    assert vsi.returncode == 0, vsi.mover_log  # the mover checked every volume's sha256
