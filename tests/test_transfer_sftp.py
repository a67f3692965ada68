"""Range reads over SFTP from the real sshd, and the sftp -> COS copy (moto through ibm-cos-sdk)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from infra.sftp_source import SftpRangeReader, SftpReadError, SftpSource, open_source, session_clients
from infra.transfer import LocalFileSource, MiB, TransferConfig, TransferError
from tests.support.sshd import Sshd
from zimage import objects
from zimage.config import Storage

PART = 5 * MiB


@pytest.fixture
def staged(tmp_path: Path) -> tuple[Path, bytes]:
    directory = tmp_path / "stage" / "zos" / "SYSZ25A" / "volumes"
    directory.mkdir(parents=True)
    data = os.urandom(2 * PART + 777)
    path = directory / "MN25S2_2023-06-13_18_44_13.gz"
    path.write_bytes(data)
    return path, data


def _storage(sshd: Sshd, root: Path, **extra: Any) -> Storage:
    return Storage(**sshd.endpoint(root=str(root), **extra))


def test_ranges_read_over_sftp_equal_the_file(sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = staged
    source = open_source(_storage(sshd, tmp_path / "stage"), str(path))
    assert isinstance(source, SftpSource)
    assert source.name == f"sftp://127.0.0.1:{sshd.port}{path}"
    assert source.size() == len(data)
    with source.open() as reader:
        assert reader.read(0, 100) == data[:100]
        assert reader.read(PART - 5, 40_000) == data[PART - 5 : PART - 5 + 40_000]  # spans several 32 KiB blocks
        assert reader.read(len(data) - 10, 10) == data[-10:]
        with pytest.raises(SftpReadError, match="outside the file"):
            reader.read(len(data) - 10, 11)


def test_short_replies_are_completed_and_later_requests_shrink(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = staged
    storage = _storage(sshd, tmp_path / "stage")
    # OpenSSH answers at most 255 KiB per request: asking for 1 MiB gets short replies
    with SftpRangeReader(session_clients(storage), str(path), "test", request_size=1 << 20) as reader:
        assert reader.read(1000, 3 << 20) == data[1000 : 1000 + (3 << 20)]
        assert reader.request_size == 255 * 1024


def test_a_file_that_shrinks_while_read_is_an_error(sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = staged
    source = open_source(_storage(sshd, tmp_path / "stage"), str(path))
    with source.open() as reader:
        with path.open("r+b") as f:
            f.truncate(PART)
        assert reader.read(0, 1000) == data[:1000]
        with pytest.raises(SftpReadError, match=f"{path}: reading bytes {PART - 10}"):
            reader.read(PART - 10, 100_000)


def test_the_reader_kept_from_size_is_closed_when_the_copy_is_skipped(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any
) -> None:
    path, data = staged
    storage = _storage(sshd, tmp_path / "stage")
    digest = hashlib.sha256(data).hexdigest()
    cos_store.upload_file("v", path, digest, config=TransferConfig(part_size=PART))
    source = open_source(storage, str(path))
    assert cos_store.upload_stream("v", source, digest).skipped
    assert source._spare is None


def test_missing_remote_file_is_named(sshd: Sshd, tmp_path: Path) -> None:
    (tmp_path / "stage").mkdir()
    missing = tmp_path / "stage" / "NOPE_2023-06-13_18_44_13.gz"
    source = open_source(_storage(sshd, tmp_path / "stage"), str(missing))
    with pytest.raises(SftpReadError, match=f"{missing}: cannot open"):
        source.size()


def test_a_missing_file_fails_the_copy_naming_object_and_file(sshd: Sshd, tmp_path: Path, cos_store: Any) -> None:
    (tmp_path / "stage").mkdir()
    missing = tmp_path / "stage" / "NOPE_2023-06-13_18_44_13.gz"
    source = open_source(_storage(sshd, tmp_path / "stage"), str(missing))
    with pytest.raises(TransferError, match=f"cos://.*/v: cannot read the size of sftp://.*{missing}"):
        cos_store.upload_stream("v", source, "0" * 64)


def test_paths_outside_the_staging_root_are_refused(sshd: Sshd, tmp_path: Path) -> None:
    storage = _storage(sshd, tmp_path / "stage")
    with pytest.raises(ValueError, match="not under the staging root"):
        open_source(storage, str(tmp_path / "stage" / ".." / "etc" / "passwd"))
    with pytest.raises(ValueError, match="not under the staging root"):
        open_source(storage, "relative/file.gz")


def test_local_staging_is_read_directly(tmp_path: Path, staged: tuple[Path, bytes]) -> None:
    path, _ = staged
    storage = Storage(host="localhost", username="me", root=str(tmp_path / "stage"), transport="local")
    source = open_source(storage, str(path))
    assert isinstance(source, LocalFileSource)
    assert source.size() == path.stat().st_size


def test_sftp_to_cos_copy(sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any) -> None:
    path, data = staged
    storage = _storage(sshd, tmp_path / "stage")
    opened: list[int] = []
    factory = session_clients(storage)

    def counting_factory() -> Any:
        opened.append(1)
        return factory()

    source = open_source(storage, str(path), counting_factory)
    key = objects.volume_key("zos25-dev", path.name)
    digest = hashlib.sha256(data).hexdigest()
    result = cos_store.upload_stream(
        key, source, digest, objects.GZIP, config=TransferConfig(part_size=PART, workers=2)
    )
    assert (result.parts, result.parts_uploaded) == (3, 3)
    assert cos_store.get_bytes(key) == data
    info = cos_store.head(key)
    assert info.sha256 == digest and info.content_type == objects.GZIP
    assert info.metadata["source"] == source.name
    # the client that learnt the size serves the first worker: one client per worker
    assert len(opened) == 2


class _DroppingSource:
    """Drops every SSH connection (the sshd children are killed) when part `at` is first read."""

    def __init__(self, inner: SftpSource, sshd: Sshd, at: int):
        self.inner, self.sshd, self.at = inner, sshd, at
        self.name = inner.name
        self.dropped = False

    def size(self) -> int:
        return self.inner.size()

    def open(self) -> Any:
        reader = self.inner.open()
        read = reader.read

        def dropping(offset: int, length: int) -> bytes:
            if offset == self.at and not self.dropped:
                self.dropped = True
                self.sshd.kill_sessions()
            return read(offset, length)

        reader.read = dropping  # type: ignore[method-assign]
        return reader


def test_copy_interrupted_by_a_dropped_connection_resumes(
    sshd: Sshd, staged: tuple[Path, bytes], tmp_path: Path, cos_store: Any
) -> None:
    path, data = staged
    storage = _storage(sshd, tmp_path / "stage")
    key = objects.volume_key("zos25-dev", path.name)
    digest = hashlib.sha256(data).hexdigest()
    config = TransferConfig(part_size=PART, workers=1)
    source = _DroppingSource(SftpSource(session_clients(storage), str(path)), sshd, at=PART)
    with pytest.raises(TransferError, match=r"part 2 .*SftpReadError"):
        cos_store.upload_stream(key, source, digest, config=config)
    assert cos_store.head(key) is None
    result = cos_store.upload_stream(key, open_source(storage, str(path)), digest, config=config)
    assert (result.parts_reused, result.parts_uploaded) == (1, 2)
    assert cos_store.get_bytes(key) == data
