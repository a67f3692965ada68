"""The mover configuration the orchestrator writes, read back by the data mover's own parser."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from datamover.moverconfig import parse_config
from infra import mover_config
from zimage import objects
from zimage.build import BuiltImage
from zimage.manifests import ImageVolume

ATTACHMENTS = {"data": "zimage-data", "boot": "zimage-boot", "scratch": "zimage-qcow2"}
BUILD = "b1a2b3c4"


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
        cos_store, built_image(), BUILD, layout="all-in-data", attachments=ATTACHMENTS, boot_disk_gb=10,
        lifetime=mover_config.lifetimes(2 * 3600, 900), wheels=[wheel],
    )
    raw = cos_store.get_bytes(objects.mover_config_key("zdemo", BUILD))
    parsed = parse_config(raw)  # the mover accepts what the orchestrator wrote
    assert parsed.image == "zdemo" and parsed.build == BUILD
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


def _expires(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_url_lifetimes_follow_the_runs_own_deadline(cos_store: Any) -> None:
    short = mover_config.write(
        cos_store, built_image(), BUILD, layout="all-in-data", attachments=ATTACHMENTS, boot_disk_gb=10,
        lifetime=mover_config.lifetimes(deadline_s=30 * 60, provisioning_s=15 * 60),
    )
    doc = json.loads(cos_store.get_bytes(short.key))
    urls = [*doc["objects"]["urls"].values(), *doc["qcow2"]["part_urls"], doc["report"]["url"], doc["progress"]["url"]]
    # a 30-minute deadline: the URLs outlive it by the provisioning wait and the boot, not by hours
    assert {_expires(u) for u in urls} == {30 * 60 + 15 * 60 + mover_config.BOOT_S}
    assert _expires(short.config_url) == 15 * 60 + mover_config.BOOT_S  # read once, at first boot
    assert short.key == f"zdemo/builds/{BUILD}/mover-config.json"
    assert cos_store.pending_uploads(objects.qcow2_key("zdemo", BUILD))
    assert mover_config.discard(cos_store, "zdemo", BUILD)  # no upload id needed to abort it
    assert cos_store.pending_uploads(objects.qcow2_key("zdemo", BUILD)) == []


def test_a_deadline_past_what_presigned_urls_allow_is_refused() -> None:
    with pytest.raises(ValueError, match=r"the most SigV4 allows is 168 h"):
        mover_config.lifetimes(deadline_s=168 * 3600, provisioning_s=900)
