"""deploy-host writes the host's network symbols into the deployed copies of the IEASYMxx members the
IPL chain leads to (a small z/OS system on three dasdload volumes); the staged generation stays as
extracted, and Hercules dasdpdsu reads the new values back from the deployed volumes."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.deploy_host import deploy_host
from tests.support.host_site import HOST, IMAGE, HostSite, sha256, start_site
from tests.support.ipl_system import build_system, unload_member

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

VOLUMES = {"zt-sysres": ("sysres", [("MN25S2", "0A80"), ("MN25U1", "0A81"), ("MN25T1", "0A82")])}
NETWORK = {"HOMEIPADDRESS1": "10.1.1.2", "DEFAULTROUTEADDR": "10.1.1.1", "NAMESERVERADDR1": "10.1.1.9"}


def _system(directory: Path) -> None:
    system = build_system(directory / "system")
    for volser, path in system.plain.items():
        shutil.copyfile(path, directory / f"{volser}.ckd")


@pytest.fixture(scope="module")
def symbol_site(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[HostSite]:
    image = {"ipl": {"device": "0A80", "loadparm": "0A82CS"}}
    site = start_site(tmp_path_factory.mktemp("host-symbols"), _system, VOLUMES, image=image, cylinders=5)
    try:
        yield site
    finally:
        site.stop()


def test_the_host_network_lands_in_the_deployed_ieasym_members(symbol_site: HostSite, tmp_path: Path) -> None:
    site = symbol_site
    staged = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (site.root / "staging").rglob("*.gz")}
    state = deploy_host(site.config(network=NETWORK), IMAGE, HOST, return_state=True)
    assert state.is_completed() and state.name == "Completed", state.message
    result = state.result()
    assert result["network_symbols"].startswith("written: "), result["network_symbols"]
    current = site.image_dir / "current"
    ieasym00 = unload_member(current / "MN25S2", "SYS1.PARMLIB", "IEASYM00", tmp_path / "s2")
    ieasym01 = unload_member(current / "MN25U1", "USER.PARMLIB", "IEASYM01", tmp_path / "u1")
    assert "SYMDEF(&HOMEIPADDRESS1.='10.1.1.2')" in ieasym00
    assert "SYMDEF(&DEFAULTROUTEADDR.='10.1.1.1')" in ieasym00
    assert "SYMDEF(&NAMESERVERADDR1.='10.1.1.9')" in ieasym01
    # the staged generation stays as extracted
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (site.root / "staging").rglob("*.gz")}
    assert after == staged
    document = json.loads((current / "zimage-set.json").read_text())
    by_volser = {v["volser"]: v for v in document["volumes"]}
    for volser in ("MN25S2", "MN25U1"):
        assert by_volser[volser]["deployed_sha256"] == sha256(current / volser)
        assert by_volser[volser]["deployed_sha256"] != by_volser[volser]["extracted_sha256"]
    assert by_volser["MN25T1"]["deployed_sha256"] == by_volser["MN25T1"]["extracted_sha256"]
    # only the member's records changed: everything else of the volume is as extracted
    staged_s2 = next((site.root / "staging").rglob("MN25S2_*.gz"))
    source = gzip.decompress(staged_s2.read_bytes())
    deployed = (current / "MN25S2").read_bytes()
    changed = [i for i in range(0, len(source), 4096) if source[i : i + 4096] != deployed[i : i + 4096]]
    assert len(source) == len(deployed) and 1 <= len(changed) <= 2

    # a refresh with the same extraction reuses the rewritten files (their deployed sha256 still holds)
    again = deploy_host(site.config(network={**NETWORK, "NAMESERVERADDR1": "10.1.1.8"}), IMAGE, HOST)
    assert {v["volser"]: v["origin"] for v in again["volumes"]} == dict.fromkeys(("MN25S2", "MN25U1", "MN25T1"),
                                                                                  "reused")  # fmt: skip
    assert "SYMDEF(&NAMESERVERADDR1.='10.1.1.8')" in unload_member(current / "MN25U1", "USER.PARMLIB", "IEASYM01",
                                                             tmp_path / "u1b")  # fmt: skip
