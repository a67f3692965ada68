"""Staging uploaded by the storage server itself (a real sshd as storage server, moto as COS): the data
mover runs there with presigned part URLs only, the orchestrator checks the digest and completes.
Resume, a wrong digest, no Python there, COS out of its reach, and nothing left behind."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from datamover.errors import MoverError
from datamover.stage import Unreachable, stage
from infra.storage_upload import StorageCannotUpload, upload_from_storage, url_seconds
from infra.transfer import DigestMismatch, MiB, TransferConfig, TransferError
from tests.support.sshd import Sshd
from zimage import objects
from zimage.config import Storage

PART = 5 * MiB
SECRETS = ("access_key_id", "secret_access_key")


@pytest.fixture
def staged(tmp_path: Path) -> tuple[Path, bytes]:
    directory = tmp_path / "stage" / "zos" / "SYSZ25A" / "volumes"
    directory.mkdir(parents=True)
    rng = random.Random(5)
    data = b"".join(rng.randbytes(MiB) if rng.random() < 0.6 else bytes(MiB) for _ in range(17)) + b"tail"
    path = directory / "MN25S2_2023-06-13_18_44_13.gz"
    path.write_bytes(data)
    return path, data


def _upload(sshd: Sshd, tmp_path: Path, store: Any, path: Path, data: bytes, **extra: Any) -> tuple[Any, list[str]]:
    storage = Storage(**sshd.endpoint(root=str(tmp_path / "stage"), **extra))
    lines: list[str] = []
    key = objects.volume_key("zos25-dev", path.name)
    result = upload_from_storage(
        storage, store, key, str(path), len(data), hashlib.sha256(data).hexdigest(), objects.GZIP,
        {"volser": "MN25S2"}, lines.append, TransferConfig(part_size=PART, workers=2, log_interval_s=0.01),
    )  # fmt: skip
    return result, lines


def _left_on_storage() -> str:
    return subprocess.run(["pgrep", "-af", "zimage-stage"], capture_output=True, text=True).stdout


def test_the_storage_server_uploads_the_file_itself(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any, s3_bucket: Any
) -> None:
    path, data = staged
    result, lines = _upload(sshd, tmp_path, cos_store, path, data)
    key = objects.volume_key("zos25-dev", path.name)
    assert (result.parts, result.parts_uploaded, result.parts_reused, result.skipped) == (4, 4, 0, False)
    assert cos_store.get_bytes(key) == data
    info = cos_store.head(key)
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.content_type == objects.GZIP
    assert info.metadata["volser"] == "MN25S2"
    assert s3_bucket.pending_uploads() == []
    assert any("MB sent" in line and "MB/s" in line for line in lines), lines
    assert not any(word in line for line in lines for word in (s3_bucket.secret_access_key, "X-Amz-Signature"))
    assert _left_on_storage() == ""
    again, _ = _upload(sshd, tmp_path, cos_store, path, data)
    assert again.skipped and again.parts_uploaded == 0


def test_an_interrupted_upload_keeps_the_parts_it_holds(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any, s3_bucket: Any
) -> None:
    path, data = staged
    key = objects.volume_key("zos25-dev", path.name)
    digest = hashlib.sha256(data).hexdigest()
    upload = cos_store.create_multipart(key, objects.GZIP, {"volser": "MN25S2", "sha256": digest})
    for number in (1, 2):  # what a run that died after two parts left
        part = data[(number - 1) * PART : number * PART]
        cos_store.upload_part(key, upload, number, part, hashlib.md5(part).digest())
    result, _ = _upload(sshd, tmp_path, cos_store, path, data)
    assert (result.parts_uploaded, result.parts_reused) == (2, 2)
    assert cos_store.get_bytes(key) == data and s3_bucket.pending_uploads() == []


def test_a_digest_other_than_the_manifests_completes_nothing(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any, s3_bucket: Any
) -> None:
    path, data = staged
    storage = Storage(**sshd.endpoint(root=str(tmp_path / "stage")))
    key = objects.volume_key("zos25-dev", path.name)
    with pytest.raises(DigestMismatch, match="sha256"):
        upload_from_storage(storage, cos_store, key, str(path), len(data), "0" * 64, objects.GZIP, {}, print,
                            TransferConfig(part_size=PART, workers=2))  # fmt: skip
    assert cos_store.head(key) is None and s3_bucket.pending_uploads() == []


def test_no_python_on_the_storage_server_is_named_and_leaves_nothing(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any, s3_bucket: Any
) -> None:
    path, data = staged
    with pytest.raises(StorageCannotUpload, match=r"storage server \(.*\): no Python 3 as '/nonexistent/python3'.*"
                                                  r"storage.python"):  # fmt: skip
        _upload(sshd, tmp_path, cos_store, path, data, python="/nonexistent/python3")
    assert cos_store.head(objects.volume_key("zos25-dev", path.name)) is None and s3_bucket.pending_uploads() == []


def test_a_file_of_another_size_than_the_manifests_is_an_error(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any
) -> None:
    path, data = staged
    with pytest.raises(TransferError, match=r"bytes, the manifest says"):
        _upload(sshd, tmp_path, cos_store, path, data + b"more")


def test_the_mover_checks_that_the_store_answers_before_reading(staged: tuple[Path, bytes]) -> None:
    path, data = staged
    job = {"action": "stage", "path": str(path), "size": len(data), "part_size": 32 * MiB,
           "parts": [{"number": 1, "url": "http://127.0.0.1:9/bucket/key?partNumber=1"}]}  # fmt: skip
    with pytest.raises(Unreachable, match=r"the object store 127.0.0.1:9 cannot be reached from here"):
        stage(job)
    bad = {
        "expected an absolute path": {**job, "path": "relative/file"},
        "2 parts for": {**job, "parts": [*job["parts"], {"number": 2, "url": "http://127.0.0.1:9/b/k?partNumber=2"}]},
        "parts[0]: not an http(s) URL": {**job, "parts": [{"number": 1, "url": "file:///x"}]},
        "part_size: expected a positive number": {**job, "part_size": 0},
    }
    for message, value in bad.items():
        with pytest.raises(MoverError, match=re.escape(message)):
            stage(value)


def test_part_urls_live_long_enough_for_a_slow_upload_and_no_longer_than_sigv4_allows() -> None:
    assert url_seconds(1) == 3600
    assert url_seconds(10**13) == 7 * 24 * 3600
    assert 3600 < url_seconds(10**11) < 7 * 24 * 3600


def test_a_part_the_store_refuses_stops_the_upload_naming_the_part(
    staged: tuple[Path, bytes], cos_store: Any
) -> None:
    path, data = staged
    key = objects.volume_key("zos25-dev", path.name)
    upload = cos_store.create_multipart(key, objects.GZIP, {})
    urls = [cos_store.presign_part(key, upload, n, 600) for n in (1, 2, 3, 4)]
    urls[1] = urls[1].replace(upload, "no-such-upload")  # an upload the store does not know
    job = {"action": "stage", "path": str(path), "size": len(data), "part_size": PART,
           "parts": [{"number": n + 1, "url": u} for n, u in enumerate(urls)], "concurrency": 1}  # fmt: skip
    try:
        with pytest.raises(MoverError, match=r"upload MN25S2_2023-06-13_18_44_13.gz part 2: HTTP \d{3}"):
            stage(job)
        assert [p.number for p in cos_store.list_parts(key, upload)] == [1]  # nothing read or sent after it
    finally:
        cos_store.abort_multipart(key, upload)
