"""The transfer manager against both stores: moto through ibm-cos-sdk, and a local directory."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from infra.object_store import LocalObjectStore, ObjectStore
from infra.transfer import (
    MAX_PARTS,
    MIN_PART_SIZE,
    DigestMismatch,
    LocalFileReader,
    LocalFileSource,
    MiB,
    TransferConfig,
    TransferError,
    choose_part_size,
    plan_parts,
)

PART = 5 * MiB  # the smallest part S3 takes, to keep test data small
CONFIG = TransferConfig(part_size=PART, workers=2, parts_in_memory=3)
KEY = "zos25-dev/volumes/MN25S2_2023-06-13_18_44_13.gz"


# --- planning ---------------------------------------------------------------------------------


def test_part_size_defaults_to_64_mib_for_big_files() -> None:
    assert choose_part_size(10 * 1024 * MiB, workers=4) == 64 * MiB


def test_part_size_shrinks_to_give_each_worker_several_parts_but_not_under_8_mib() -> None:
    assert choose_part_size(512 * MiB, workers=4) == 16 * MiB
    assert choose_part_size(100 * MiB, workers=4) == MIN_PART_SIZE
    assert choose_part_size(10 * MiB, workers=4) == MIN_PART_SIZE


def test_part_size_grows_so_that_10000_parts_hold_the_object() -> None:
    size = 2 * 1024 * 1024 * MiB  # 2 TiB
    part = choose_part_size(size)
    assert part % MiB == 0
    assert len(plan_parts(size, part)) <= MAX_PARTS
    assert part > 64 * MiB


def test_plan_covers_every_byte_once() -> None:
    parts = plan_parts(3 * PART + 7, PART)
    assert [p.number for p in parts] == [1, 2, 3, 4]
    assert sum(p.length for p in parts) == 3 * PART + 7
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(parts))


def test_config_rejects_parts_cos_would_refuse() -> None:
    with pytest.raises(ValueError, match="part_size"):
        TransferConfig(part_size=MiB)
    with pytest.raises(ValueError, match="parts_in_memory"):
        TransferConfig(workers=4, parts_in_memory=2)


def test_local_reader_reads_ranges_and_reports_a_short_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 4)
    with LocalFileReader(path) as reader:
        assert reader.size == 1024
        assert reader.read(250, 10) == bytes(range(250, 256)) + bytes(range(4))
        with pytest.raises(EOFError, match="ends at 1024"):
            reader.read(1020, 10)


# --- copies into both stores --------------------------------------------------------------


@pytest.fixture(params=["cos", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "cos":
        return request.getfixturevalue("cos_store")
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("volume") / "MN25S2_2023-06-13_18_44_13.gz"
    data = os.urandom(3 * PART + 12345)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


class CountingSource:
    """A local file that counts opens and part reads, and fails reading one offset once."""

    def __init__(self, path: Path, fail_at: int | None = None):
        self.inner = LocalFileSource(path)
        self.name = self.inner.name
        self.fail_at = fail_at
        self.opens = 0
        self.reads: Counter[int] = Counter()
        self._lock = threading.Lock()

    def size(self) -> int:
        return self.inner.size()

    def open(self) -> Any:
        with self._lock:
            self.opens += 1
        return _CountingReader(self, self.inner.open())


class _CountingReader:
    def __init__(self, source: CountingSource, inner: LocalFileReader):
        self.source = source
        self.inner = inner
        self.size = inner.size

    def read(self, offset: int, length: int) -> bytes:
        with self.source._lock:
            self.source.reads[offset] += 1
            fail = offset == self.source.fail_at
            if fail:
                self.source.fail_at = None
        if fail:
            raise ConnectionResetError("connection to the storage server lost")
        return self.inner.read(offset, length)

    def close(self) -> None:
        self.inner.close()


def test_multipart_copy_stores_the_bytes_with_their_digest(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, digest = volume
    seen: list[tuple[int, int]] = []
    result = store.upload_stream(
        KEY,
        LocalFileSource(path),
        digest,
        "application/gzip",
        config=CONFIG,
        progress=lambda done, total, _: seen.append((done, total)),
    )
    assert (result.parts, result.parts_uploaded, result.parts_reused, result.skipped) == (4, 4, 0, False)
    assert store.get_bytes(KEY) == path.read_bytes()
    info = store.head(KEY)
    assert info is not None
    assert info.sha256 == digest
    assert info.size == path.stat().st_size
    assert info.content_type == "application/gzip"
    assert info.metadata["source"] == f"file://{path}"
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert [b for b, _ in seen] == sorted(b for b, _ in seen)
    assert store.pending_uploads(KEY) == []


def test_small_object_goes_in_one_request(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(b"x" * 1000)
    result = store.upload_file("a/small", path, hashlib.sha256(b"x" * 1000).hexdigest(), config=CONFIG)
    assert (result.parts, result.skipped) == (1, False)
    assert store.get_bytes("a/small") == b"x" * 1000


def test_empty_file_is_stored(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    store.upload_file("a/empty", path, hashlib.sha256(b"").hexdigest(), config=CONFIG)
    info = store.head("a/empty")
    assert info is not None and info.size == 0


def test_digest_mismatch_aborts_and_leaves_nothing(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, _ = volume
    wrong = "0" * 64
    with pytest.raises(DigestMismatch, match="expected 0000") as caught:
        store.upload_stream(KEY, LocalFileSource(path), wrong, config=CONFIG)
    assert caught.value.key == KEY
    assert KEY in str(caught.value)
    assert store.head(KEY) is None
    assert store.pending_uploads(KEY) == []
    assert store.list() == []


def test_digest_mismatch_of_a_small_object_stores_nothing(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(b"abc")
    with pytest.raises(DigestMismatch):
        store.upload_file("a/small", path, "1" * 64, config=CONFIG)
    assert store.head("a/small") is None


def test_expected_digest_must_be_a_sha256(store: ObjectStore, volume: tuple[Path, str]) -> None:
    with pytest.raises(ValueError, match="64 lowercase hexadecimal"):
        store.upload_stream(KEY, LocalFileSource(volume[0]), "ABC", config=CONFIG)


def test_present_object_with_same_digest_is_skipped_without_reading(
    store: ObjectStore, volume: tuple[Path, str]
) -> None:
    path, digest = volume
    store.upload_stream(KEY, LocalFileSource(path), digest, config=CONFIG)
    source = CountingSource(path)
    result = store.upload_stream(KEY, source, digest, config=CONFIG)
    assert result.skipped
    assert (source.opens, sum(source.reads.values())) == (0, 0)


def test_present_object_with_other_digest_is_replaced(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, digest = volume
    store.put_bytes(KEY, b"old content")
    result = store.upload_stream(KEY, LocalFileSource(path), digest, config=CONFIG)
    assert not result.skipped
    assert store.get_bytes(KEY) == path.read_bytes()


def _count_cos_part_uploads(store: ObjectStore) -> Counter[str]:
    """Count UploadPart requests the COS client sends (an event hook; nothing is replaced)."""
    counts: Counter[str] = Counter()
    client = getattr(store, "client", None)
    if client is not None:
        client.meta.events.register(
            "before-call.s3.UploadPart", lambda **kw: counts.update(["UploadPart"])
        )
    return counts


def test_interrupted_copy_resumes_with_only_the_missing_parts(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, digest = volume
    failing_part = 3
    source = CountingSource(path, fail_at=(failing_part - 1) * PART)
    with pytest.raises(TransferError, match=f"part {failing_part} .*ConnectionResetError") as caught:
        store.upload_stream(KEY, source, digest, config=CONFIG)
    assert caught.value.part == failing_part
    assert store.head(KEY) is None
    (pending,) = store.pending_uploads(KEY)
    kept = {p.number for p in store.list_parts(KEY, pending.upload_id)}
    assert {1, 2} <= kept and failing_part not in kept

    counts = _count_cos_part_uploads(store)
    again = CountingSource(path)
    result = store.upload_stream(KEY, again, digest, config=CONFIG)
    assert result.parts_uploaded == 4 - len(kept)
    assert result.parts_reused == len(kept)
    if getattr(store, "client", None) is not None:
        assert counts["UploadPart"] == 4 - len(kept)
    assert store.get_bytes(KEY) == path.read_bytes()
    assert store.pending_uploads(KEY) == []
    info = store.head(KEY)
    assert info is not None and info.sha256 == digest


def test_resumed_part_with_changed_content_is_uploaded_again(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, digest = volume
    upload_id = store.create_multipart(KEY, "application/gzip", {"sha256": digest})
    garbage = os.urandom(PART)
    store.upload_part(KEY, upload_id, 1, garbage, hashlib.md5(garbage).digest())
    result = store.upload_stream(KEY, LocalFileSource(path), digest, config=CONFIG)
    assert (result.parts_uploaded, result.parts_reused) == (4, 0)
    assert store.get_bytes(KEY) == path.read_bytes()


def test_stale_resumed_upload_metadata_is_not_kept(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, digest = volume
    # an interrupted upload begun for other content of the same key, whose first part matches
    upload_id = store.create_multipart(KEY, "application/gzip", {"sha256": "2" * 64})
    first = path.read_bytes()[:PART]
    store.upload_part(KEY, upload_id, 1, first, hashlib.md5(first).digest())
    store.upload_stream(KEY, LocalFileSource(path), digest, config=CONFIG)
    info = store.head(KEY)
    assert info is not None and info.sha256 == digest
    assert store.get_bytes(KEY) == path.read_bytes()
    assert store.pending_uploads(KEY) == []


def test_older_interrupted_uploads_are_aborted(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, digest = volume
    for _ in range(2):
        store.create_multipart(KEY, "application/gzip", {"sha256": digest})
    store.upload_stream(KEY, LocalFileSource(path), digest, config=CONFIG)
    assert store.pending_uploads(KEY) == []


def test_memory_stays_bounded(store: ObjectStore, volume: tuple[Path, str]) -> None:
    """At no time hold more parts than parts_in_memory: count parts read but not yet uploaded."""
    path, digest = volume
    config = TransferConfig(part_size=PART, workers=2, parts_in_memory=2)
    live = 0
    peak = 0
    lock = threading.Lock()
    upload_part = store.upload_part

    class Tracking(CountingSource):
        def open(self) -> Any:
            reader = super().open()
            read = reader.read

            def tracked(offset: int, length: int) -> bytes:
                nonlocal live, peak
                data = read(offset, length)
                with lock:
                    live += 1
                    peak = max(peak, live)
                return data

            reader.read = tracked
            return reader

    def counted_upload(*args: Any) -> str:
        nonlocal live
        try:
            return upload_part(*args)
        finally:
            with lock:
                live -= 1

    store.upload_part = counted_upload  # type: ignore[method-assign]
    store.upload_stream(KEY, Tracking(path), digest, config=config)
    assert 1 <= peak <= 2


def test_caller_metadata_is_kept_but_cannot_replace_the_digest(store: ObjectStore, volume: tuple[Path, str]) -> None:
    path, digest = volume
    metadata = {"sha256": "f" * 64, "volser": "MN25S2"}
    store.upload_stream(KEY, LocalFileSource(path), digest, metadata=metadata, config=CONFIG)
    info = store.head(KEY)
    assert info is not None
    assert info.sha256 == digest
    assert info.metadata["volser"] == "MN25S2"
