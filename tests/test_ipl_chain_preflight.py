"""Preflight of an image runs the IPL-chain check on the staged generation (read on the storage server,
a real sshd): a good chain is an ok check, a broken one fails the flow naming the finding, and before
the first extraction the check is a warning that says why it did not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.preflight import PreflightFailed, preflight
from tests.support.ipl_system import build_system, config, loadxx, stage
from tests.support.pds import DASDLOAD
from tests.support.sshd import Sshd

NO_RETRY = {"retry_delay_seconds": 0, "cloud_check": False}  # the target is a placeholder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.skipif(DASDLOAD is None, reason="Hercules dasdload is not installed (Debian hercules)"),
]
CHECK = "image zos25-dev: IPL chain"


def checks(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def test_preflight_of_an_image_checks_its_ipl_chain_on_the_staged_volumes(sshd: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "staging"
    stage(build_system(tmp_path / "sys"), root)
    result = preflight(str(config(sshd, tmp_path, root, parmlib=False)), image="zos25-dev", **NO_RETRY)
    ipl = checks(result)[CHECK]
    assert ipl["status"] == "ok", ipl
    assert ipl["target"] == "zos25-sysres 2024-05-01_10_00_00"
    assert ipl["messages"][0].startswith("0 error(s), 0 warning(s) on 3 staged volume(s) read on ")
    assert "LOADCS: MN25T1:SYS0.IPLPARM(LOADCS) (IODF device 0A82)" in ipl["messages"]
    assert result["findings"]["IPL chain of zos25-dev"] == []


def test_a_broken_chain_fails_preflight_naming_volume_data_set_member_and_line(sshd: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "staging"
    stage(build_system(tmp_path / "sys", load=loadxx(iodf="42")), root)
    with pytest.raises(PreflightFailed) as failed:
        preflight(str(config(sshd, tmp_path, root, parmlib=False)), image="zos25-dev", **NO_RETRY)
    message = str(failed.value)
    assert f"  {CHECK} (zos25-sysres 2024-05-01_10_00_00): 1 error(s)" in message
    assert (
        "  MN25T1:SYS0.IPLPARM(LOADCS):2: error: IODF 42 SYS1: data set SYS1.IODF42 is absent from the IODF "
        "volume MN25T1"
    ) in message


def test_before_the_first_extraction_the_check_is_a_warning_saying_why(sshd: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "staging"
    root.mkdir()
    result = preflight(str(config(sshd, tmp_path, root, parmlib=False)), image="zos25-dev", **NO_RETRY)
    ipl = checks(result)[CHECK]
    assert ipl["status"] == "warning"
    assert ipl["messages"][0].startswith("not checked: component 'zos25-sysres' has no verified extraction")
    assert "IPL chain of zos25-dev" not in result["findings"]
