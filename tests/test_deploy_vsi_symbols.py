"""deploy-image (mover vsi) with `images[].network` given: the IPL chain is followed on the staged
volumes, the mover VSI rewrites the IEASYMxx members in place in its data volume, and Hercules dasdpdsu
reads the new values from the volume file taken out of that data volume. The objects in the bucket
stay as extracted; the report records the extracted and the deployed sha256."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from flows.outcome import STATE_WITHOUT_SYMBOLS
from tests.support.datamover import ext2_dump
from tests.support.ipl_system import build_system, unload_member
from tests.support.vsi_emulator import IMAGE, DeploySite, VsiEmulator, extract_all, site_config
from zimage import objects

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

VOLUMES = {"zt-sysres": ("sysres", [("MN25S2", "0A80"), ("MN25U1", "0A81"), ("MN25T1", "0A82")])}
NETWORK = {"HOMEIPADDRESS1": "10.1.1.2", "DEFAULTROUTEADDR": "10.1.1.1", "NAMESERVERADDR1": "10.1.1.9"}
SITE = {"volumes": VOLUMES, "cylinders": 5}


@pytest.fixture(scope="module")
def staged_site(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """The three-volume system of tests.support.ipl_system, extracted once into local staging."""
    root = tmp_path_factory.mktemp("vsi-symbols")
    (root / "source").mkdir()
    for volser, path in build_system(root / "system").plain.items():
        shutil.copyfile(path, root / "source" / f"{volser}.ckd")
    target = {"region": "jp-tok", "zone": 1, "cos": {"instance_name": "c", "bucket": "unused", "region": "jp-tok"}}
    path = root / "extract.yaml"
    path.write_text(yaml.safe_dump(site_config(root, target=target, **SITE), sort_keys=False))  # type: ignore[arg-type]
    extract_all(path, VOLUMES)
    return root


def _config(site: DeploySite, **image: object) -> str:
    return site.config(site={**SITE, "image": {"ipl": {"device": "0A80", "loadparm": "0A82CS"}, **image}})


def _staged_digests(site: DeploySite) -> dict[str, str]:
    keys = objects.ImageObjects(IMAGE, objects.PER_IMAGE)
    return {
        volser: hashlib.sha256(site.get(keys.volume(path.name))).hexdigest()
        for volser, path in ((p.name.split("_")[0], p) for p in (site.staged / "staging").rglob("*.gz"))
    }


def test_the_image_network_lands_in_the_ieasym_members_of_the_data_volume(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator, tmp_path: Path
) -> None:
    site = deploy_site
    state = site.deploy(_config(site, network=NETWORK), return_state=True)
    assert state.is_completed() and state.name == "Completed", state.message
    summary = state.result()
    assert summary["network_symbols"].startswith("written: "), summary["network_symbols"]
    assert site.fake.leftovers() == []
    report = json.loads(site.get(objects.report_key(IMAGE, summary["build_id"])))
    by_volser = {v["name"]: v for v in report["volumes"]}
    assert "rewrite" in report["phases"]
    (vsi,) = vsi_emulator.vsis
    data_disk = vsi.devices["zimage-data"]
    deployed = {v: ext2_dump(data_disk, f"/{v}", tmp_path / v) for v in ("MN25S2", "MN25U1", "MN25T1")}
    for volser in ("MN25S2", "MN25U1"):
        entry = by_volser[volser]
        assert entry["deployed-sha256"] == hashlib.sha256(deployed[volser]).hexdigest()
        assert entry["deployed-sha256"] != entry["sha256"]
        assert summary["deployed_sha256"][volser] == entry["deployed-sha256"]
    assert by_volser["MN25T1"]["deployed-sha256"] is None
    assert hashlib.sha256(deployed["MN25T1"]).hexdigest() == by_volser["MN25T1"]["sha256"]
    ieasym00 = unload_member(tmp_path / "MN25S2", "SYS1.PARMLIB", "IEASYM00", tmp_path / "s2")
    ieasym01 = unload_member(tmp_path / "MN25U1", "USER.PARMLIB", "IEASYM01", tmp_path / "u1")
    assert "SYMDEF(&HOMEIPADDRESS1.='10.1.1.2')" in ieasym00
    assert "SYMDEF(&DEFAULTROUTEADDR.='10.1.1.1')" in ieasym00
    assert "SYMDEF(&NAMESERVERADDR1.='10.1.1.9')" in ieasym01
    # the staged objects are as extracted, and only the member's blocks of the volume changed
    staged = {p.name.split("_")[0]: p for p in (site.staged / "staging").rglob("*.gz")}
    assert _staged_digests(site) == {v: hashlib.sha256(p.read_bytes()).hexdigest() for v, p in staged.items()}
    source = gzip.decompress(staged["MN25S2"].read_bytes())
    changed = [i for i in range(0, len(source), 4096) if source[i : i + 4096] != deployed["MN25S2"][i : i + 4096]]
    assert len(source) == len(deployed["MN25S2"]) and 1 <= len(changed) <= 2


def test_symbols_the_chain_cannot_reach_are_not_written_and_the_run_says_so(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator
) -> None:
    site = deploy_site
    # LOADZZ is on no volume: the chain ends before any IEASYMxx member
    config = _config(site, network=NETWORK, ipl={"device": "0A80", "loadparm": "0A82ZZ"})
    state = site.deploy(config, return_state=True)
    assert state.is_completed() and state.name == STATE_WITHOUT_SYMBOLS, state.message
    summary = state.result()
    assert summary["network_symbols"].startswith("NOT written: the IPL chain found no IEASYMxx member")
    assert summary["deployed_sha256"] == {}
    assert site.products() == ([IMAGE], [f"{IMAGE}-data"]) and site.fake.leftovers() == []
    report = json.loads(site.get(objects.report_key(IMAGE, summary["build_id"])))
    assert "rewrite" not in report["phases"]
    assert all(v["deployed-sha256"] is None for v in report["volumes"])
