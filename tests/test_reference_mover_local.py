"""zimage's mover on objects in the reference builder's form (DESIGN §6): image-metadata.json with
no image name and volumes with name, file-name, compression and boot only; env-overrides that is not
JSON; properties.json. `python -m datamover local` converts them, the files landing at the data
volume's root as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datamover.errors import MoverError
from datamover.manifest import parse_manifest
from tests.support.datamover import MoverObjects, e2fsck_clean, ext2_dump, ext2_names, ext2_stat, run_datamover
from tests.support.volumes import dasd_volume

pytestmark = pytest.mark.integration
QUICK = ("--retries", "0", "--retry-delay", "0")
REFERENCE_FIELDS = ("name", "file-name", "compression", "boot")
ENV_OVERRIDES = b"# zPDT settings, not JSON\nZOS_SYSTEM=S0W1\n"
PROPERTIES = b'{"zos.ipl.loadparm": "0A82CSM1"}'


def _reference_objects(objects: MoverObjects, tmp_path: Path) -> Path:
    for volser, boot in (("ZRES01", True), ("WORK01", False)):
        entry = objects.add(volser, dasd_volume(tmp_path / f"{volser}.ckd", volser), boot=boot)
        for key in set(entry) - set(REFERENCE_FIELDS):
            del entry[key]
    return objects.write(image=None, env_overrides=ENV_OVERRIDES, properties=PROPERTIES)


def test_reference_metadata_converts_with_the_image_named_on_the_command_line(
    mover_objects: MoverObjects, tmp_path: Path
) -> None:
    root = _reference_objects(mover_objects, tmp_path)
    doc = json.loads((root / "image-metadata.json").read_text())
    assert "name" not in doc["image"] and all(sorted(v) == sorted(REFERENCE_FIELDS) for v in doc["volumes"])
    out = tmp_path / "out"

    done = run_datamover("local", "--objects", str(root), "--out", str(out), "--image", "wazi-custom-image", *QUICK)

    assert done.returncode == 0, done.stderr
    data = out / "wazi-custom-image-data.img"
    e2fsck_clean(data)
    assert ext2_names(data) - {"lost+found"} == {
        "ZRES01",
        "WORK01",
        "devmap",
        ".zosprepared",
        "env-overrides",
        "properties.json",
    }
    assert ext2_dump(data, "/env-overrides", tmp_path / "env") == ENV_OVERRIDES
    assert ext2_dump(data, "/properties.json", tmp_path / "props") == PROPERTIES
    for volser, raw in mover_objects.raw.items():
        assert ext2_dump(data, f"/{volser}", tmp_path / f"{volser}.back") == raw.read_bytes()
    for name in ("/env-overrides", "/properties.json"):
        assert (ext2_stat(data, name)["uid"], ext2_stat(data, name)["gid"]) == (999, 999)
    report = json.loads((out / "report.json").read_text())
    assert report["image"] == "wazi-custom-image" and report["status"] == "succeeded"
    assert (out / "wazi-custom-image.qcow2").exists()


def test_reference_metadata_without_an_image_name_needs_one(mover_objects: MoverObjects, tmp_path: Path) -> None:
    root = _reference_objects(mover_objects, tmp_path)
    out = tmp_path / "out"

    done = run_datamover("local", "--objects", str(root), "--out", str(out), *QUICK)

    assert done.returncode == 1
    assert "image-metadata.json has no image.name (a reference builder's file): give --image NAME" in done.stderr
    assert json.loads((out / "report.json").read_text())["status"] == "failed"
    assert not list(out.glob("*.img")) and not list(out.glob("*.qcow2"))


def test_an_image_name_that_disagrees_with_the_metadata_is_refused(mover_objects: MoverObjects, tmp_path: Path) -> None:
    mover_objects.add("ZRES01", dasd_volume(tmp_path / "ZRES01.ckd", "ZRES01"), boot=True)
    root = mover_objects.write(image="zos25-dev")
    done = run_datamover("local", "--objects", str(root), "--out", str(tmp_path / "o"), "--image", "other", *QUICK)
    assert done.returncode == 1
    assert "image-metadata.json names image 'zos25-dev', --image 'other'" in done.stderr


def test_reference_metadata_parses_without_image_or_checksums() -> None:
    volume = {"name": "MN25S2", "file-name": "MN25S2_2023-06-13_18_44_13.gz", "compression": "gzip", "boot": True}
    for doc in ({"volumes": [volume]}, {"image": {"size": 1, "boot-size": 1}, "volumes": [volume]}):
        manifest = parse_manifest(json.dumps(doc).encode())
        assert manifest.name is None and manifest.volumes[0].boot and manifest.volumes[0].sha256 is None
    with pytest.raises(MoverError, match="'image' must be an object"):
        parse_manifest(json.dumps({"image": "zos", "volumes": [volume]}).encode())
