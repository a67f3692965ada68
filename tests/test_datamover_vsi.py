"""`python -m datamover vsi` on an emulated mover VSI: the instance metadata service and the
presigned URLs are a local HTTP server, the attached volumes are image files found under a by-id
directory and mounted with -o loop (root only; skipped elsewhere)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from datamover.moverconfig import SCHEMA
from tests.support.datamover import (
    MoverObjects,
    ObjectServer,
    VsiEmulation,
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
PART = 5 << 20


def _presigned(server: ObjectServer, objects: Path, **changes: Any) -> dict[str, Any]:
    base = server.url
    config = {
        "schema": SCHEMA,
        "image": "zos25-dev",
        "layout": "boot-split",
        "objects": {"type": "urls", "urls": server.serve_dir(objects)},
        "qcow2": {
            "type": "multipart", "part_size": PART, "concurrency": 2,
            "part_urls": [f"{base}/up/zos25-dev.qcow2?partNumber={n}&uploadId=U1&X-Amz-Signature=s" for n in
                          range(1, 11)],
            "complete_url": f"{base}/up/zos25-dev.qcow2?uploadId=U1&X-Amz-Signature=s",
        },
        "progress": {"type": "put", "url": f"{base}/up/progress.json?X-Amz-Signature=s"},
        "report": {"type": "put", "url": f"{base}/up/report.json?X-Amz-Signature=s"},
        "progress_every": 0.2,
        **changes,
    }
    return config


def _run(vsi: VsiEmulation, server: ObjectServer, config: dict[str, Any]) -> Any:
    config["attachments"] = vsi.attachments
    server.state.objects["/config/mover.json"] = json.dumps(config).encode()
    env_before = dict(os.environ)
    os.environ.update(vsi.env)
    try:
        return run_datamover("vsi", "--config-url", f"{server.url}/config/mover.json?X-Amz-Signature=s",
                             "--workdir", str(vsi.workdir), "--retry-delay", "0", "--progress-every", "0.2")
    finally:
        os.environ.clear()
        os.environ.update(env_before)


def _volumes(objects: MoverObjects, tmp_path: Path) -> None:
    objects.add("ZRES01", dasd_volume(tmp_path / "zres01.ckd", "ZRES01"), boot=True, devnum="0A80")
    # random bytes on the boot disk make the qcow2 bigger than one part
    objects.add("ZRES02", synthetic_volume(tmp_path / "zres02.raw", 6 << 20, seed=2, random_share=1.0), boot=True,
                devnum="0A81")
    objects.add("WORK01", dasd_volume(tmp_path / "work01.ckd", "WORK01"), devnum="0A82")


def _no_mounts(vsi: VsiEmulation) -> None:
    for role in ("data", "boot", "scratch"):
        assert not os.path.ismount(vsi.workdir / role), role


def test_vsi_converts_into_attached_volumes_and_uploads_qcow2_then_report(
    vsi_emulation: VsiEmulation, object_server: ObjectServer, mover_objects: MoverObjects, tmp_path: Path
) -> None:
    _volumes(mover_objects, tmp_path)
    objects = mover_objects.write(env_overrides=b"ZOS_SYSTEM=S0W1\n", properties=b'{"a": 1}')

    done = _run(vsi_emulation, object_server, _presigned(object_server, objects))

    assert done.returncode == 0, done.stderr
    assert "X-Amz-Signature" not in done.stderr  # presigned URLs are credentials
    _no_mounts(vsi_emulation)
    data = vsi_emulation.devices["data"]
    e2fsck_clean(data)
    assert ext2_label(data) == "zvolumes"
    assert ext2_names(data) >= {"WORK01", "devmap", ".zosprepared", "env-overrides", "properties.json"}
    assert ext2_dump(data, "/env-overrides", tmp_path / "e") == b"ZOS_SYSTEM=S0W1\n"
    assert ext2_dump(data, "/WORK01", tmp_path / "w.back") == mover_objects.raw["WORK01"].read_bytes()
    for path in ("/", "/WORK01", "/devmap", "/.zosprepared", "/env-overrides", "/properties.json"):
        assert (ext2_stat(data, path)["uid"], ext2_stat(data, path)["gid"]) == (999, 999), path

    uploads = object_server.state
    assert uploads.upload_order[-1] == "/up/report.json"  # last: it tells the orchestrator the mover is done
    assert "/up/progress.json" in uploads.upload_order
    report = json.loads(uploads.uploads["/up/report.json?X-Amz-Signature=s"])
    assert report["status"] == "succeeded" and sorted(report["volumes-succeeded"]) == ["WORK01", "ZRES01", "ZRES02"]
    progress = json.loads(uploads.uploads["/up/progress.json?X-Amz-Signature=s"])
    assert progress["status"] == "succeeded" and progress["gz_bytes_done"] == progress["gz_bytes_total"]

    parts = {int(re.search(r"partNumber=(\d+)", k)[1]): v for k, v in uploads.uploads.items() if "partNumber" in k}
    assert len(parts) == report["outputs"]["qcow2-upload"]["parts"] >= 2
    assert all(len(parts[n]) == PART for n in range(1, len(parts)))
    complete = uploads.uploads["/up/zos25-dev.qcow2?uploadId=U1&X-Amz-Signature=s"].decode()
    assert complete.count("<PartNumber>") == len(parts)
    qcow2 = tmp_path / "uploaded.qcow2"
    qcow2.write_bytes(b"".join(parts[n] for n in sorted(parts)))
    qcow2_check(qcow2)
    boot = qcow2_to_raw(qcow2, tmp_path / "boot.raw")
    e2fsck_clean(boot)
    for volser in ("ZRES01", "ZRES02"):
        assert ext2_dump(boot, f"/{volser}", tmp_path / f"{volser}.back") == mover_objects.raw[volser].read_bytes()
        assert ext2_stat(boot, f"/{volser}")["uid"] == 999


def test_vsi_failure_is_reported_last_and_leaves_nothing_mounted(
    vsi_emulation: VsiEmulation, object_server: ObjectServer, mover_objects: MoverObjects, tmp_path: Path
) -> None:
    _volumes(mover_objects, tmp_path)
    mover_objects.entries[2]["sha256"] = "f" * 64
    config = _presigned(object_server, mover_objects.write(), retries=1)

    done = _run(vsi_emulation, object_server, config)

    assert done.returncode == 1
    assert re.search(r"error: volume WORK01: object WORK01_\S+: sha256 is [0-9a-f]+, image-metadata.json says f+",
                     done.stderr.strip().splitlines()[-2]), done.stderr
    _no_mounts(vsi_emulation)
    assert object_server.state.upload_order[-1] == "/up/report.json"
    report = json.loads(object_server.state.uploads["/up/report.json?X-Amz-Signature=s"])
    assert report["status"] == "failed" and "volume WORK01" in report["error"]
    assert report["volumes-failed"] == ["WORK01"]
    assert not any("partNumber" in k for k in object_server.state.uploads)  # no qcow2 from a failed run


def test_vsi_with_hmac_credentials_on_s3(
    vsi_emulation: VsiEmulation, object_server: ObjectServer, mover_objects: MoverObjects, s3_bucket: Any,
    tmp_path: Path,
) -> None:
    from tests.test_datamover_remote import _boto

    mover_objects.add("ZRES01", dasd_volume(tmp_path / "zres01.ckd", "ZRES01"), boot=True)
    boto = _boto(s3_bucket)
    for path in mover_objects.write().iterdir():
        boto.put_object(Bucket=s3_bucket.bucket, Key=f"images/zos25-dev/{path.name}", Body=path.read_bytes())
    config = {
        "schema": SCHEMA, "image": "zos25-dev", "layout": "all-in-data",
        "s3": {"endpoint": s3_bucket.endpoint, "region": s3_bucket.region, "bucket": s3_bucket.bucket,
               "access_key_id": s3_bucket.access_key_id, "secret_access_key": s3_bucket.secret_access_key},
        "objects": {"type": "s3", "prefix": "images/zos25-dev/"},
        "qcow2": {"type": "s3", "key": "images/zos25-dev.qcow2", "part_size": PART},
        "progress": {"type": "s3", "key": "images/zos25-dev/progress.json"},
        "report": {"type": "s3", "key": "images/zos25-dev/report.json"},
    }

    done = _run(vsi_emulation, object_server, config)

    assert done.returncode == 0, done.stderr
    assert s3_bucket.secret_access_key not in done.stderr
    report = json.loads(boto.get_object(Bucket=s3_bucket.bucket, Key="images/zos25-dev/report.json")["Body"].read())
    assert report["status"] == "succeeded"
    qcow2 = tmp_path / "s3.qcow2"
    qcow2.write_bytes(boto.get_object(Bucket=s3_bucket.bucket, Key="images/zos25-dev.qcow2")["Body"].read())
    qcow2_check(qcow2)
    data = vsi_emulation.devices["data"]
    assert ext2_dump(data, "/ZRES01", tmp_path / "z.back") == mover_objects.raw["ZRES01"].read_bytes()


def test_vsi_converts_reference_style_metadata_under_the_configured_image_name(
    vsi_emulation: VsiEmulation, object_server: ObjectServer, mover_objects: MoverObjects, tmp_path: Path
) -> None:
    # the existing builder's image-metadata.json: no image name, volumes with name, file-name, compression, boot
    entry = mover_objects.add("ZRES01", dasd_volume(tmp_path / "zres01.ckd", "ZRES01"), boot=True)
    for key in set(entry) - {"name", "file-name", "compression", "boot"}:
        del entry[key]
    objects = mover_objects.write(image=None, env_overrides=b"ZOS_SYSTEM=S0W1\n")

    done = _run(vsi_emulation, object_server, _presigned(object_server, objects, layout="all-in-data"))

    assert done.returncode == 0, done.stderr
    report = json.loads(object_server.state.uploads["/up/report.json?X-Amz-Signature=s"])
    assert report["status"] == "succeeded" and report["image"] == "zos25-dev"
    data = vsi_emulation.devices["data"]
    assert ext2_dump(data, "/ZRES01", tmp_path / "z.back") == mover_objects.raw["ZRES01"].read_bytes()
    assert ext2_dump(data, "/env-overrides", tmp_path / "e.back") == b"ZOS_SYSTEM=S0W1\n"


def test_vsi_refuses_a_rewrite_of_a_volume_the_image_does_not_hold_before_formatting(
    vsi_emulation: VsiEmulation, object_server: ObjectServer, mover_objects: MoverObjects, tmp_path: Path
) -> None:
    _volumes(mover_objects, tmp_path)
    record = base64.b64encode(b"\x40" * 80).decode()
    rewrite = {"volser": "NOPE01", "dsn": "SYS1.PARMLIB", "member": "IEASYM00", "records": [record]}
    config = _presigned(object_server, mover_objects.write(), rewrites=[rewrite])
    sizes = {role: path.stat().st_blocks for role, path in vsi_emulation.devices.items()}

    done = _run(vsi_emulation, object_server, config)

    assert done.returncode == 1
    report = json.loads(object_server.state.uploads["/up/report.json?X-Amz-Signature=s"])
    assert report["error"] == (
        "mover configuration: rewrites of volumes the image does not hold: NOPE01:SYS1.PARMLIB(IEASYM00)"
    )
    assert {role: path.stat().st_blocks for role, path in vsi_emulation.devices.items()} == sizes  # not formatted
    _no_mounts(vsi_emulation)
