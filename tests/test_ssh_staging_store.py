"""infra.staging_store: the same behaviour from the SFTP store (real sshd) and the local one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.staging_store import (
    LocalStagingStore,
    OutsideRoot,
    SftpStagingStore,
    StagingError,
    StagingStore,
    VerificationFailed,
    verify_file,
)
from tests.support.sshd import Sshd
from zimage.config import Storage

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "sftp"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StagingStore]:
    root = tmp_path / "staging"
    root.mkdir()
    if request.param == "local":
        yield LocalStagingStore(str(root))
        return
    sshd: Sshd = request.getfixturevalue("sshd")
    with SftpStagingStore(Storage(**sshd.endpoint(root=str(root)))) as remote:
        yield remote


def test_files_are_listed_stated_hashed_renamed_and_deleted(store: StagingStore) -> None:
    data = os.urandom(200_000)
    store.makedirs("zos/SYS1/volumes")
    store.write_atomic("zos/SYS1/volumes/a.bin", data)
    assert store.listdir("zos/SYS1/volumes") == ["a.bin"]  # no temporary file left
    info = store.stat("zos/SYS1/volumes/a.bin")
    assert info is not None and info.size == len(data) and not info.is_dir
    assert store.sha256("zos/SYS1/volumes/a.bin") == hashlib.sha256(data).hexdigest()
    store.write_atomic("zos/SYS1/volumes/b.bin", b"old")
    store.rename("zos/SYS1/volumes/a.bin", "zos/SYS1/volumes/b.bin")  # replaces
    assert store.read_bytes("zos/SYS1/volumes/b.bin") == data
    assert store.delete("zos/SYS1/volumes/b.bin") is True
    assert store.delete("zos/SYS1/volumes/b.bin") is False
    assert store.stat("zos/SYS1/volumes/b.bin") is None
    assert store.listdir("zos/NOSUCH/volumes") == []


def test_paths_outside_the_root_are_refused(store: StagingStore) -> None:
    for path in ("../escape", "/etc/passwd", "zos/../../x"):
        with pytest.raises(OutsideRoot, match="outside the staging root"):
            store.stat(path)


def test_small_file_reads_are_bounded(store: StagingStore) -> None:
    store.write_atomic("big", b"x" * 2000)
    with pytest.raises(StagingError, match="larger than 1000 bytes"):
        store.read_bytes("big", limit=1000)


def test_free_space_is_reported(store: StagingStore) -> None:
    assert store.free_bytes(".") > 0


def test_streaming_read_of_a_whole_file_and_a_range(store: StagingStore) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    store.write_atomic("vol.gz", data)
    with store.open_read("vol.gz") as reader:
        assert hashlib.sha256(reader.read()).digest() == hashlib.sha256(data).digest()
    with store.open_read("vol.gz", offset=4_000_000, length=1_000_000) as reader:
        assert reader.read() == data[4_000_000:5_000_000]


def test_verification_removes_a_file_that_differs(store: StagingStore) -> None:
    data = b"staged bytes"
    store.write_atomic("v.gz", data)
    verify_file(store, store.inside("v.gz"), len(data), hashlib.sha256(data).hexdigest())
    with pytest.raises(VerificationFailed, match=r"sha256 on .* the bad file was removed"):
        verify_file(store, store.inside("v.gz"), len(data), hashlib.sha256(b"other bytes!").hexdigest())
    assert store.stat("v.gz") is None
    store.write_atomic("w.gz", data)
    with pytest.raises(VerificationFailed, match=r"12 bytes on .* reported 13"):
        verify_file(store, store.inside("w.gz"), 13, hashlib.sha256(data).hexdigest())
    assert store.stat("w.gz") is None


def test_an_unwritable_directory_is_reported(store: StagingStore, tmp_path: Path) -> None:
    blocker = Path(store.inside("zos"))
    blocker.write_text("a file where a directory should be")
    with pytest.raises(StagingError, match="is not writable"):
        store.check_writable("zos/SYS1/volumes")
