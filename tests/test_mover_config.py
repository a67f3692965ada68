"""The mover configuration the orchestrator writes, read back by the data mover's own parser."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from datamover.moverconfig import parse_config
from infra import mover_config
from zimage import objects
from zimage.build import BuiltImage
from zimage.manifests import ImageVolume

ATTACHMENTS = {"data": "zimage-data", "boot": "zimage-boot", "scratch": "zimage-qcow2"}


def built_image() -> BuiltImage:
    vol = ImageVolume(
        name="ZRES01", file_name="ZRES01_2026-01-01_00_00_00.gz", boot=True, devnum="0A80", devtype="3390",
        size=100, sha256="a" * 64, gz_sha256="b" * 64, gz_size=10, component="sysres",
    )
    return BuiltImage(image="zdemo", generations={"sysres": "2026-01-01_00_00_00"}, volumes=[vol],
                      metadata=b"{}", devmap="[system]\n")


def test_configuration_with_accelerator_wheels(cos_store: Any, s3_bucket: Any, tmp_path: Path) -> None:
    wheel = tmp_path / "isal-1.9.1-cp310-cp310-manylinux2014_x86_64.whl"
    wheel.write_bytes(b"PK-not-really-a-wheel-but-bytes-to-carry" + datetime.now(UTC).isoformat().encode())
    written = mover_config.write(
        cos_store, built_image(), layout="all-in-data", attachments=ATTACHMENTS, boot_disk_gb=10,
        deadline_hours=2, wheels=[wheel],
    )
    raw = cos_store.get_bytes(objects.mover_config_key("zdemo"))
    parsed = parse_config(raw)  # the mover accepts what the orchestrator wrote
    assert parsed.image == "zdemo"
    [accel] = parsed.accelerators
    assert accel.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    with urllib.request.urlopen(accel.url, timeout=10) as answer:
        assert answer.read() == wheel.read_bytes()
    assert written.parts >= 1 and written.config_url.startswith("http")
    assert s3_bucket.secret_access_key not in raw.decode()  # presigned URLs only, never the key
    assert json.loads(raw)["accelerators"][0]["name"] == wheel.name


def test_missing_wheel_is_named_before_anything(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"accelerator_wheels: .*nope\.whl"):
        mover_config.check_wheels([tmp_path / "nope.whl"])
