"""`python -m datamover local`: real dasdinit and synthetic volumes in, ext2 data image and qcow2 out,
checked with e2fsck, debugfs, dumpe2fs and qemu-img."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from tests.support.datamover import (
    MoverObjects,
    e2fsck_clean,
    ext2_dump,
    ext2_label,
    ext2_names,
    ext2_stat,
    qcow2_check,
    qcow2_to_raw,
    run_datamover,
)
from tests.support.volumes import dasd_volume, synthetic_volume

pytestmark = pytest.mark.integration
QUICK = ("--retries", "1", "--retry-delay", "0")


def _three_volumes(objects: MoverObjects, tmp_path: Path) -> None:
    objects.add("ZRES01", dasd_volume(tmp_path / "zres01.ckd", "ZRES01"), boot=True, devnum="0A80")
    objects.add("WORK01", dasd_volume(tmp_path / "work01.ckd", "WORK01"), devnum="0A81")
    # not a multiple of the block size, so the last partial block is exercised too
    objects.add("SYN#01", synthetic_volume(tmp_path / "syn.raw", 3 * 1024 * 1024 + 1234, seed=7, random_share=0.3),
                devnum="0A82")


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_all_in_data_holds_identical_volumes_owned_by_999(mover_objects: MoverObjects, tmp_path: Path) -> None:
    _three_volumes(mover_objects, tmp_path)
    props = b'{"zos.ipl.loadparm": "0A82CSM1"}'
    overrides = b"# not JSON: copied as it is\nZOS_SYSTEM=S0W1\n"
    objects = mover_objects.write(env_overrides=overrides, properties=props)
    out = tmp_path / "out"

    done = run_datamover("local", "--objects", str(objects), "--out", str(out), *QUICK)

    assert done.returncode == 0, done.stderr
    data, qcow2 = out / "zos25-dev-data.img", out / "zos25-dev.qcow2"
    e2fsck_clean(data)
    assert ext2_label(data) == "zvolumes"
    names = {"ZRES01", "WORK01", "SYN#01", "devmap", ".zosprepared", "env-overrides", "properties.json"}
    assert ext2_names(data) - {"lost+found"} == names
    for volser, raw in mover_objects.raw.items():
        assert ext2_dump(data, f"/{volser}", tmp_path / f"{volser}.back") == raw.read_bytes(), volser
        assert ext2_stat(data, f"/{volser}")["uid"] == 999
        assert ext2_stat(data, f"/{volser}")["gid"] == 999
    for aux in ("/devmap", "/.zosprepared", "/env-overrides", "/properties.json", "/"):
        assert (ext2_stat(data, aux)["uid"], ext2_stat(data, aux)["gid"]) == (999, 999), aux
    assert ext2_dump(data, "/devmap", tmp_path / "devmap") == (objects / "devmap").read_bytes()
    assert ext2_dump(data, "/properties.json", tmp_path / "p.json") == props
    assert ext2_dump(data, "/env-overrides", tmp_path / "env") == overrides
    assert ext2_stat(data, "/.zosprepared")["size"] == 0
    # an empty CKD volume is mostly zeros: they stay holes (512-byte blocks << size)
    zres = ext2_stat(data, "/ZRES01")
    assert zres["blocks"] * 512 < zres["size"] // 5
    qcow2_check(qcow2)

    report = _report(out)
    assert report["status"] == "succeeded" and report["error"] is None
    assert sorted(report["volumes-succeeded"]) == ["SYN#01", "WORK01", "ZRES01"]
    by_name = {v["name"]: v for v in report["volumes"]}
    for entry in mover_objects.entries:
        vol = by_name[entry["name"]]
        assert vol["sha256"] == entry["sha256"] and vol["bytes"] == entry["size"]
        assert vol["checks"]["sha256"] == "verified" and vol["checks"]["gz-sha256"].startswith("not computed")
        assert vol["mb-per-s"] is not None and vol["seconds"] >= 0
    assert by_name["ZRES01"]["checks"]["vol1"] == "VOL1 label ZRES01 verified"
    assert "not checked" in by_name["SYN#01"]["checks"]["vol1"]
    assert report["totals"]["bytes"] == sum(e["size"] for e in mover_objects.entries)
    assert re.search(r"progress: [\d,.]+/[\d,.]+ MB \(100\.0%\) [\d.]+ MB/s ETA 0:00:00; volumes 3/3 done",
                     done.stderr), done.stderr


def test_boot_split_puts_sysres_on_the_qcow2(mover_objects: MoverObjects, tmp_path: Path) -> None:
    _three_volumes(mover_objects, tmp_path)
    out = tmp_path / "out"

    done = run_datamover("local", "--objects", str(mover_objects.write()), "--out", str(out), "--layout",
                         "boot-split", *QUICK)

    assert done.returncode == 0, done.stderr
    data = out / "zos25-dev-data.img"
    assert "ZRES01" not in ext2_names(data) and {"WORK01", "SYN#01"} <= ext2_names(data)
    qcow2_check(out / "zos25-dev.qcow2")
    boot = qcow2_to_raw(out / "zos25-dev.qcow2", tmp_path / "boot.raw")
    e2fsck_clean(boot)
    assert ext2_dump(boot, "/ZRES01", tmp_path / "zres.back") == mover_objects.raw["ZRES01"].read_bytes()
    assert (ext2_stat(boot, "/ZRES01")["uid"], ext2_stat(boot, "/ZRES01")["gid"]) == (999, 999)
    assert {v["name"]: v["target"] for v in _report(out)["volumes"]}["ZRES01"] == "boot"


def test_reference_manifest_without_checksums_converts_and_says_what_was_skipped(
    mover_objects: MoverObjects, tmp_path: Path
) -> None:
    raw = dasd_volume(tmp_path / "zres01.ckd", "ZRES01")
    entry = mover_objects.add("ZRES01", raw)
    for key in ("compression", "boot", "devnum", "devtype", "size", "sha256", "gz-sha256"):
        del entry[key]
    out = tmp_path / "out"

    done = run_datamover("local", "--objects", str(mover_objects.write()), "--out", str(out), *QUICK)

    assert done.returncode == 0, done.stderr
    report = _report(out)
    checks = report["volumes"][0]["checks"]
    assert checks["sha256"].startswith("skipped") and checks["size"].startswith("skipped")
    assert checks["vol1"] == "VOL1 label ZRES01 verified" and checks["gzip-crc"] == "verified"
    assert "sha256: ZRES01" in report["checks-skipped"]


def _corrupt_gzip(objects: MoverObjects) -> None:
    path = objects.root / objects.entries[-1]["file-name"]
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0xFF
    path.write_bytes(bytes(body))
    del objects.entries[-1]["gz-sha256"]  # let the damage reach the inflater and the CRC


def _wrong_sha(objects: MoverObjects) -> None:
    objects.entries[-1]["sha256"] = "0" * 64


def _wrong_label(objects: MoverObjects) -> None:
    # the volume's bytes are what the manifest says, but its label names another volume
    path = objects.root / objects.entries[-1]["file-name"]
    objects.entries[-1]["name"] = "ZRES09"
    assert gzip.decompress(path.read_bytes())[:8] == b"CKD_P370"


def _traversal(objects: MoverObjects) -> None:
    objects.entries[-1]["file-name"] = "../../etc/passwd"


def _missing(objects: MoverObjects) -> None:
    (objects.root / objects.entries[-1]["file-name"]).unlink()


@pytest.mark.parametrize(
    ("damage", "expected", "retried"),
    [
        (_corrupt_gzip, r"volume ZRES01: object ZRES01_2024-06-13_18_44_13.gz: corrupt gzip data", True),
        (_wrong_sha, r"volume ZRES01: object ZRES01_2024-06-13_18_44_13.gz: sha256 is [0-9a-f]{64}, "
         r"image-metadata.json says 0{64}", True),
        (_wrong_label, r"volume ZRES09: object ZRES01_2024-06-13_18_44_13.gz: VOL1 label names 'ZRES01', "
         r"manifest names 'ZRES09'", True),
        (_traversal, r"volume ZRES01: volumes\[1\]\.file-name: '\.\./\.\./etc/passwd' is not a safe file name", False),
        (_missing, r"volume ZRES01: object ZRES01_2024-06-13_18_44_13.gz not found", False),
    ],
    ids=["corrupt-gzip", "wrong-sha256", "wrong-vol1", "traversal", "missing-object"],
)
def test_bad_input_fails_with_one_clear_line_and_a_report(
    mover_objects: MoverObjects, tmp_path: Path, damage, expected: str, retried: bool
) -> None:
    # one job, the good volume first: it is converted before the bad one fails the run
    mover_objects.add("WORK01", dasd_volume(tmp_path / "work01.ckd", "WORK01"), devnum="0A81")
    mover_objects.add("ZRES01", dasd_volume(tmp_path / "zres01.ckd", "ZRES01"), devnum="0A80")
    damage(mover_objects)
    out = tmp_path / "out"

    done = run_datamover("local", "--objects", str(mover_objects.write()), "--out", str(out), *QUICK, "--jobs", "1")

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("datamover: error: ") and re.search(expected, last), done.stderr
    report = _report(out)
    assert report["status"] == "failed" and re.search(expected, report["error"])
    assert not (out / "zos25-dev.qcow2").exists()
    if retried:  # the bad volume was tried twice; the good one is reported as converted
        bad = next(v for v in report["volumes"] if v["state"] == "failed")
        assert bad["attempts"] == 2
        assert report["volumes-failed"] == [bad["name"]]
        assert report["volumes-succeeded"] == ["WORK01"]
    assert not any(p.name.startswith(".zos25-dev-work") for p in out.iterdir())
