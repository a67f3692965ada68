"""deploy-host against a real storage server and a real emulator host (two OpenSSH sshd's on loopback):
the deployed volumes are byte-identical and readable by Hercules dasdls, the devmap and ownership are
right, and a refresh after one volume changed reads only that volume on the storage server."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.deploy_host import deploy_host
from flows.outcome import STATE_WITHOUT_SYMBOLS
from flows.refresh import refresh
from infra.configfile import load_config
from tasks.build import read_manifests
from tasks.host import probe_host
from tasks.ipl import ieasym_rewrites
from tests.support.host_site import HOST, IMAGE, OWNER, HostSite, dasdls, fill_random, run_cli, sha256
from zimage import host_set
from zimage.config import NoTarget

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

VOLSERS = ["ZRES01", "WORK01", "WORK02"]


def _check_deployed(site: HostSite) -> dict:
    current = site.image_dir / "current"
    for volser in VOLSERS:
        deployed = current / volser
        assert sha256(deployed) == sha256(site.source(volser)), volser
        listing = dasdls(deployed)
        assert f"ZT.{volser}.DATA" in listing, listing  # dasdls read VOL1, the VTOC and its DSCBs
        owner = pwd.getpwnam(OWNER)
        assert (deployed.stat().st_uid, deployed.stat().st_gid) == (owner.pw_uid, owner.pw_gid)
    devmap = (current / "devmap").read_text()
    for volser, devnum in (("ZRES01", "0A80"), ("WORK01", "0A90"), ("WORK02", "0A91")):
        assert f"device {devnum} 3390 3990 {site.image_dir}/current/{volser}\n" in devmap
    assert (current / "ipl").read_text() == "ipl 0a80 parm 0a82csm1\n"
    document = json.loads((current / "zimage-set.json").read_text())
    assert [v["volser"] for v in document["volumes"]] == VOLSERS
    assert document["network_symbols"].startswith("NOT written")
    for vol in document["volumes"]:
        assert vol["deployed_sha256"] == vol["extracted_sha256"] == sha256(current / vol["volser"])
    return document


def test_deploy_then_refresh_moves_only_the_changed_volume(host_site: HostSite) -> None:
    site = host_site
    state = deploy_host(site.config(), IMAGE, HOST, return_state=True)
    assert state.is_completed() and state.name == STATE_WITHOUT_SYMBOLS, state.message
    assert "network symbols NOT written" in state.message
    first = state.result()
    assert first["data_path"] == "direct" and first["moved_bytes"] > 0 and first["reused_bytes"] == 0
    document = _check_deployed(site)
    assert site.current() == f"sets/{first['set']}"
    assert site.pull_keys() == []

    fill_random(site.source("WORK02"), seed=99)
    site.extract("2024-06-02_10_00_00", ["zt-data"])
    # what the deploy's IPL-chain look-up reads on the storage server (a Python run there), measured alone
    cfg = load_config(site.config())
    manifests = read_manifests.fn(site.config(), IMAGE)
    before = site.storage_rchar()
    ieasym_rewrites(cfg, IMAGE, manifests, host_set.network_of(cfg.host(HOST), cfg.image(IMAGE)))
    lookup = site.storage_rchar() - before
    before = site.storage_rchar()
    second = deploy_host(site.config(), IMAGE, HOST)
    read = site.storage_rchar() - before - lookup

    origins = {v["volser"]: v["origin"] for v in second["volumes"]}
    assert origins == {"ZRES01": "reused", "WORK01": "reused", "WORK02": "transferred"}
    moved = next(v["moved"] for v in second["volumes"] if v["volser"] == "WORK02")
    assert second["moved_bytes"] == moved
    assert second["reused_bytes"] == 2 * (site.source("ZRES01").stat().st_size)
    # the storage server read WORK02's compressed file (its sftp process and the session both count
    # it: about twice) and a little besides; one more volume would add at least 3 MB
    assert moved <= read < 2 * moved + (1 << 20), (read, moved)
    _check_deployed(site)
    assert site.current() == f"sets/{second['set']}" != f"sets/{first['set']}"
    assert sorted(os.listdir(site.image_dir / "sets")) == sorted([first["set"], second["set"]])  # keep: 2
    assert document["set"] == first["set"]
    assert "WORK02 are" not in second["markdown"] and "moved:" in second["markdown"]
    assert site.pull_keys() == []


def test_a_deploy_of_the_current_set_writes_nothing(host_site: HostSite) -> None:
    site = host_site
    deploy_host(site.config(), IMAGE, HOST)
    before = site.snapshot()
    again = deploy_host(site.config(), IMAGE, HOST)
    assert again["switched"] is False and again["moved_bytes"] == 0
    assert site.snapshot() == before


def test_plan_shows_transfer_reuse_space_and_sets_without_writing(host_site: HostSite) -> None:
    site = host_site
    deploy_host(site.config(), IMAGE, HOST)
    fill_random(site.source("WORK01"), seed=7)
    site.extract("2024-06-03_10_00_00", ["zt-data"])
    before, keys = site.snapshot(), (site.storage.directory / "authorized_keys").read_text()
    done = run_cli("plan", site.config(), "--image", IMAGE, "--host", HOST)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line[:6] in VOLSERS}
    assert lines == {"ZRES01": "reuse", "WORK01": "transfer", "WORK02": "reuse"}, done.stdout
    assert "needed" in done.stdout and "available" in done.stdout and "sets removed:" in done.stdout
    assert site.snapshot() == before
    assert (site.storage.directory / "authorized_keys").read_text() == keys


@pytest.mark.parametrize("data_path", ["relay", "local"])
def test_relay_and_local_paths_deploy_the_same_bytes(host_site: HostSite, data_path: str) -> None:
    site = host_site
    fill_random(site.source("WORK01"), seed=11 if data_path == "relay" else 12)
    site.extract("2024-06-04_10_00_00" if data_path == "relay" else "2024-06-05_10_00_00", ["zt-data"])
    result = deploy_host(site.config(f"{data_path}.yaml", data_path=data_path), IMAGE, HOST)
    assert result["data_path"] == data_path
    assert {v["volser"]: v["origin"] for v in result["volumes"]}["WORK01"] == "transferred"
    _check_deployed(site)
    assert site.pull_keys() == []


def test_a_volume_changed_on_the_host_is_sent_again(host_site: HostSite) -> None:
    site = host_site
    deploy_host(site.config(), IMAGE, HOST)
    deployed = site.image_dir / "current" / "ZRES01"
    with deployed.open("r+b") as f:  # the emulator wrote to it
        f.seek(3 << 20)
        f.write(b"written by the emulator")
    fill_random(site.source("WORK02"), seed=123)
    site.extract("2024-06-06_10_00_00", ["zt-data"])
    result = deploy_host(site.config(), IMAGE, HOST)
    assert {v["volser"]: v["origin"] for v in result["volumes"]} == {
        "ZRES01": "transferred",
        "WORK01": "reused",
        "WORK02": "transferred",
    }
    _check_deployed(site)


def test_refresh_ends_on_the_host_and_a_cloud_deploy_needs_a_target(host_site: HostSite) -> None:
    site = host_site
    staged = sorted((site.root / "staging").rglob("*.manifest.json"))
    with pytest.raises(NoTarget, match="this config has no target: section"):
        refresh(site.config(), IMAGE, host=HOST, also_ibm_cloud=True, skip_preflight=True)
    assert sorted((site.root / "staging").rglob("*.manifest.json")) == staged  # nothing extracted
    result = refresh(site.config(), IMAGE, host=HOST, skip_preflight=True)
    assert result["deploy"] == {} and site.current() == f"sets/{result['host']['set']}"
    assert result["host"]["set"].startswith(max(result["generations"].values()))  # the new extraction
    _check_deployed(site)


def _python38() -> str:
    """A Python 3.8 interpreter's real path (pyenv's shim needs a shell set up for it)."""
    candidates = [shutil.which("python3.8"), *map(str, Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))]
    for found in filter(None, candidates):
        done = subprocess.run([found, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
    pytest.skip("no Python 3.8 runs on this machine")


def test_a_host_with_python_3_8_runs_the_mover(host_site: HostSite) -> None:
    site = host_site
    python = _python38()
    fill_random(site.source("WORK02"), seed=38)
    # newer than any generation an earlier refresh made with the time of day
    site.extract(datetime.now(UTC).strftime("%Y-%m-%d_%H_%M_%S"), ["zt-data"])
    config = site.config("py38.yaml", python=python)
    assert probe_host.fn(config, HOST, IMAGE).python.startswith("3.8.")
    result = deploy_host(config, IMAGE, HOST)
    assert {v["volser"]: v["origin"] for v in result["volumes"]}["WORK02"] == "transferred"
    _check_deployed(site)
