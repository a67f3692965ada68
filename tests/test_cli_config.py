"""zimage validate and zimage plan as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from infra.cloudinit import USER_DATA_LIMIT

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zimage.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok() -> None:
    code, out, _ = run("validate", str(EXAMPLE))
    assert code == 0 and "valid" in out and "3 volume(s)" in out


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = EXAMPLE.read_text().replace("loadparm: 0A82CSM1", "loadparm: 0A82CSZ1")
    bad.write_text(text.replace("zone: 1", "zone: 0"))
    code, _, err = run("validate", str(bad))
    assert code == 2
    assert "images[0].ipl.loadparm" in err and "target.zone" in err and "2 problem(s)" in err


def test_validate_unreadable(tmp_path: Path) -> None:
    code, _, err = run("validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in err


def test_plan_lists_resources_and_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBMCLOUD_API_KEY", "never-print-this-key")
    code, out, _ = run("plan", str(EXAMPLE), "--image", "zos25-dev")
    assert code == 0, out
    # 3390-9 + 3390-27 + 3390-9 = 44,872,788,240 bytes -> ceil(44.87 * 1.1) = 50 GB
    assert "zimage-b0000000-data" in out and "50 GB 10iops-tier" in out
    assert "zos25-dev.qcow2" in out and "zos25-dev/image-metadata.json" in out
    assert "kept       image           zos25-dev" in out and "zos25-dev-data" in out
    size = int(out.split("user data: ")[1].split()[0])
    assert 1000 < size < USER_DATA_LIMIT
    assert "never-print-this-key" not in out


def test_plan_shows_user_data_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBMCLOUD_API_KEY", "never-print-this-key")
    monkeypatch.setenv("COS_HMAC_SECRET_ACCESS_KEY", "never-print-this-secret")
    code, out, _ = run("plan", str(EXAMPLE), "--image", "zos25-dev", "--show-user-data")
    assert code == 0
    user_data = out.split("--- user data ---\n", 1)[1]
    assert user_data.startswith("#!/bin/sh")
    assert "presigned-get-url" in user_data and "--config-url" in user_data and " vsi " in user_data
    assert "never-print" not in user_data


def test_plan_unknown_image() -> None:
    code, _, err = run("plan", str(EXAMPLE), "--image", "nope")
    assert code == 2 and "zos25-dev" in err


def test_plan_says_who_sets_the_network_symbols(tmp_path: Path) -> None:
    code, out, _ = run("plan", str(EXAMPLE), "--image", "zos25-dev")
    assert code == 0 and "network symbols: left to Wazi aaS, which sets HOMEIPADDRESS1" in out
    given = tmp_path / "given.yaml"
    text = EXAMPLE.read_text()
    wazi = "network: {HOMEIPADDRESS1: 172.26.1.2, DEFAULTROUTEADDR: 172.26.1.1, NAMESERVERADDR1: 172.26.1.1}"
    assert wazi in text  # the example gives Wazi aaS's own values: nothing for the mover to write
    own = "network: {HOMEIPADDRESS1: 10.1.1.2, DEFAULTROUTEADDR: 10.1.1.1, NAMESERVERADDR1: 10.1.1.9}"
    given.write_text(text.replace(wazi, own, 1))
    code, out, _ = run("plan", str(given), "--image", "zos25-dev")
    assert code == 0, out
    assert ("network symbols: HOMEIPADDRESS1=10.1.1.2, DEFAULTROUTEADDR=10.1.1.1, NAMESERVERADDR1=10.1.1.9, "
            "written by the mover into the IEASYMxx members") in out
