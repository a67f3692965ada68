"""The refresh flow, end to end on local parts: preflight, extract each component, deploy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.demo import IMAGE, PARMLIB, demo_config
from zimage import ckd

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def site(tmp_path: Path) -> Path:
    config = demo_config(tmp_path, volumes=1, cylinders=3)
    (tmp_path / "source" / "parmlib").mkdir(parents=True)
    for name, text in PARMLIB.items():
        (tmp_path / "source" / "parmlib" / name).write_text(text)
    for comp in config["components"]:
        for vol in comp["volumes"]:
            with (tmp_path / "source" / f"{vol['volser']}.ckd").open("wb") as out:
                out.writelines(ckd.volume_tracks(vol["volser"], 3, data_every=2))
    for directory in ("storage", "objects", "out"):
        (tmp_path / directory).mkdir()
    path = tmp_path / "zimage.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_refresh_runs_every_stage(tmp_path: Path) -> None:
    from flows.refresh import refresh

    config = site(tmp_path)
    result = refresh(str(config), IMAGE)
    assert set(result["generations"]) == {"demo-sysres", "demo-data"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "succeeded"
    assert sorted(report["volumes-succeeded"]) == ["USR001", "ZRES01", "ZRES02"]
    assert Path(result["deploy"]["qcow2"]).exists()


def test_refresh_stops_at_preflight(tmp_path: Path) -> None:
    from flows.preflight import PreflightFailed
    from flows.refresh import refresh

    config = site(tmp_path)
    profile = tmp_path / "source" / "parmlib" / "PROFILE"
    profile.write_text(profile.read_text().replace("&HOMEIPADDRESS1  ", "10.1.1.1         "))
    with pytest.raises(PreflightFailed, match="PROFILE"):
        refresh(str(config), IMAGE)
    assert not any((tmp_path / "storage").rglob("*.gz")), "nothing may be extracted after a failed preflight"


def test_refresh_needs_instance_settings_before_anything(tmp_path: Path) -> None:
    from flows.refresh import refresh

    config = site(tmp_path)
    with pytest.raises(ValueError, match="instance_subnet"):
        refresh(str(config), IMAGE, create_instance=True)
    assert not any((tmp_path / "storage").iterdir())
