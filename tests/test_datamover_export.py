"""The export mover's pieces on real dasdinit volumes: the devmap, the VOL1 check, the plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datamover.errors import MoverError
from datamover.export import PLAN_SCHEMA, find_devices, parse_devmap, parse_plan
from tests.support.volumes import dasd_volume

DEVMAP = """[system]
memory 16g

[manager]
name awsckd 0001
device 0a80 3390 3990 /volumes/ZRES01
device 0A90 3390 3990 /volumes/WORK01

[manager]
name aws3274 0002
device 0700 3279 3274
"""


def test_the_devmap_gives_the_ckd_devices_only() -> None:
    assert parse_devmap(DEVMAP) == [
        ("0A80", "3390", "3990", "/volumes/ZRES01"),
        ("0A90", "3390", "3990", "/volumes/WORK01"),
    ]
    with pytest.raises(MoverError, match=r"devmap line 3: expected 'device DEVNUM DEVTYPE CUTYPE PATH'"):
        parse_devmap("[manager]\nname awsckd 0001\ndevice 0A8 3390\n")
    with pytest.raises(MoverError, match="no awsckd device lines"):
        parse_devmap("[manager]\nname aws3274 0002\ndevice 0700 3279 3274\n")


def test_each_volume_is_named_by_its_vol1_label(tmp_path: Path) -> None:
    for volser in ("ZRES01", "WORK01"):
        dasd_volume(tmp_path / volser, volser, cylinders=2)
    devices = find_devices(str(tmp_path), DEVMAP)
    assert [(d.volser, d.devnum, d.cylinders) for d in devices] == [("ZRES01", "0A80", 2), ("WORK01", "0A90", 2)]
    assert all(d.label.startswith("VOL1 label") for d in devices)

    shutil.copy(tmp_path / "ZRES01", tmp_path / "WORK01")  # a file whose label names another volume
    with pytest.raises(
        MoverError, match=r"device 0A90: /volumes/WORK01: VOL1 label names 'ZRES01', the file is named 'WORK01'"
    ):
        find_devices(str(tmp_path), DEVMAP)
    with pytest.raises(MoverError, match=r"device 0A80: /volumes/\.\./etc is not a file on the data volume"):
        find_devices(str(tmp_path), DEVMAP.replace("/volumes/ZRES01", "/volumes/../etc"))


def test_the_plan_must_name_exactly_the_volumes_found() -> None:
    spec = {"type": "multipart", "part_size": 5 << 20, "part_urls": ["http://s/1"], "complete_url": "http://s/c"}
    plan = json.dumps({"schema": PLAN_SCHEMA, "volumes": {"ZRES01": spec}}).encode()
    assert parse_plan(plan, ["ZRES01"])["ZRES01"].part_urls == ("http://s/1",)
    with pytest.raises(MoverError, match="export plan names ZRES01, the data volume holds WORK01, ZRES01"):
        parse_plan(plan, ["WORK01", "ZRES01"])
    with pytest.raises(MoverError, match="part_size: at least"):
        parse_plan(plan.replace(b'"part_size": 5242880', b'"part_size": 1024'), ["ZRES01"])
