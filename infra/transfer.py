"""The transfer manager: copy a byte range source into an object store as a multipart upload.

Parts are read from the source and uploaded by a bounded pool of worker threads, each with its
own reader (an sftp client must not be shared between threads). At most `parts_in_memory` parts
are held at once, so memory stays flat whatever the size of the object. The sha256 of the whole
object is computed in order by the calling thread while the workers go on, and the upload is only
completed when it equals the digest the caller expects (the manifest's); otherwise it is aborted.

Re-runs are cheap: an object already present with the same sha256 and size is skipped, and an
interrupted multipart upload of the same key is resumed — parts whose size and ETag (the MD5 of
the part) match what is read again are kept, the rest are uploaded.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)

MiB = 1 << 20
MIN_PART_SIZE = 8 * MiB  # smallest part chosen automatically
S3_MIN_PART_SIZE = 5 * MiB  # smallest part S3/COS accept (all but the last)
S3_MAX_PART_SIZE = 5 * 1024 * MiB
DEFAULT_PART_SIZE = 64 * MiB
MAX_PARTS = 10_000
PARTS_PER_WORKER = 8  # enough parts that workers drift apart and reads overlap uploads
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

ProgressCallback = Callable[[int, int, float], None]
"""Called with (bytes done, bytes in all, bytes per second since the start)."""


# --- sources --------------------------------------------------------------------------------


@runtime_checkable
class RangeReader(Protocol):
    """Reads byte ranges of one file; used by one thread only."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class RangeSource(Protocol):
    """A file that can be opened once per worker thread."""

    name: str  # for messages and the object's `source` metadata; never holds credentials

    def size(self) -> int: ...

    def open(self) -> RangeReader: ...


class LocalFileReader:
    """Range reads on a local file with pread (no shared file position, so no locking)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        chunks: list[bytes] = []
        done = 0
        while done < length:
            chunk = os.pread(self._fd, length - done, offset + done)
            if not chunk:
                raise EOFError(f"{self.path}: file ends at {offset + done}, expected {length - done} more bytes")
            chunks.append(chunk)
            done += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LocalFileSource:
    """A file on this machine (the storage server is the orchestrator's own host)."""

    path: Path

    @property
    def name(self) -> str:
        return f"file://{self.path}"

    def size(self) -> int:
        return self.path.stat().st_size

    def open(self) -> LocalFileReader:
        return LocalFileReader(self.path)


# --- what the copier needs from a store ------------------------------------------------------


@dataclass(frozen=True)
class PartInfo:
    number: int
    size: int
    etag: str  # without quotes


@dataclass(frozen=True)
class PendingUpload:
    key: str
    upload_id: str
    initiated: datetime | None = None


class StoredObject(Protocol):
    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str | None: ...


class MultipartBackend(Protocol):
    def describe(self, key: str) -> str: ...

    def head(self, key: str) -> StoredObject | None: ...

    def put_bytes(
        self, key: str, data: bytes, content_type: str = ..., metadata: Mapping[str, str] | None = ...
    ) -> StoredObject: ...

    def delete(self, key: str) -> None: ...

    def create_multipart(self, key: str, content_type: str, metadata: Mapping[str, str]) -> str: ...

    def pending_uploads(self, key: str) -> list[PendingUpload]: ...

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]: ...

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes, md5: bytes) -> str: ...

    def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo]) -> object: ...

    def abort_multipart(self, key: str, upload_id: str) -> None: ...


# --- plan and configuration ------------------------------------------------------------------


class TransferError(RuntimeError):
    """A copy failed; names the object and, where it applies, the part."""

    def __init__(self, message: str, key: str, part: int | None = None):
        super().__init__(message)
        self.key = key
        self.part = part


class DigestMismatch(TransferError):
    def __init__(self, where: str, key: str, expected: str, actual: str):
        super().__init__(
            f"{where}: sha256 of the content read is {actual}, expected {expected}; "
            "the upload was aborted and nothing was stored",
            key,
        )
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class TransferConfig:
    part_size: int | None = None  # None: chosen from the size (see choose_part_size)
    workers: int = 4
    parts_in_memory: int | None = None  # None: workers + 2 (room for the in-order hash to lag)
    log_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.part_size is not None and not S3_MIN_PART_SIZE <= self.part_size <= S3_MAX_PART_SIZE:
            raise ValueError(
                f"part_size {self.part_size} is outside the {S3_MIN_PART_SIZE}..{S3_MAX_PART_SIZE} COS allows"
            )
        if self.parts_in_memory is not None and self.parts_in_memory < self.workers:
            raise ValueError(f"parts_in_memory ({self.parts_in_memory}) must be at least workers ({self.workers})")

    @property
    def memory_parts(self) -> int:
        return self.parts_in_memory or self.workers + 2


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def choose_part_size(size: int, workers: int = 4, preferred: int = DEFAULT_PART_SIZE) -> int:
    """64 MiB parts; smaller (not under 8 MiB) when the object would give each worker fewer than
    PARTS_PER_WORKER parts — with only one part per worker all read at once and then all upload
    at once, and reading and uploading hardly overlap; larger when 10,000 parts would not hold it."""
    part = min(preferred, max(MIN_PART_SIZE, _round_up(-(-size // (workers * PARTS_PER_WORKER)), MiB)))
    part = max(part, _round_up(-(-size // MAX_PARTS), MiB))
    if part > S3_MAX_PART_SIZE:
        raise ValueError(f"{size} bytes do not fit into {MAX_PARTS} parts of at most {S3_MAX_PART_SIZE} bytes")
    return part


@dataclass(frozen=True)
class PlannedPart:
    number: int
    offset: int
    length: int


def plan_parts(size: int, part_size: int) -> list[PlannedPart]:
    count = max(1, -(-size // part_size))
    if count > MAX_PARTS:
        raise ValueError(f"{size} bytes in parts of {part_size} need {count} parts, more than {MAX_PARTS}")
    return [PlannedPart(n + 1, n * part_size, min(part_size, size - n * part_size)) for n in range(count)]


@dataclass(frozen=True)
class CopyResult:
    key: str
    size: int
    sha256: str
    parts: int
    parts_uploaded: int
    parts_reused: int
    skipped: bool
    seconds: float

    @property
    def bytes_per_second(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0


# --- progress --------------------------------------------------------------------------------


class _Progress:
    def __init__(self, where: str, total: int, interval: float, callback: ProgressCallback | None):
        self.where = where
        self.total = total
        self.interval = interval
        self.callback = callback
        self.start = time.monotonic()
        self.done = 0
        self._last_log = self.start
        self._lock = threading.Lock()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            done, rate = self.done, self.rate()
            now = time.monotonic()
            due = now - self._last_log >= self.interval
            if due:
                self._last_log = now
        if due:
            log.info("%s: %s", self.where, _amounts(done, self.total, rate))
        if self.callback:
            self.callback(done, self.total, rate)


def _amounts(done: int, total: int, rate: float) -> str:
    share = 100.0 * done / total if total else 100.0
    return f"{done / MiB:.1f} of {total / MiB:.1f} MiB ({share:.0f}%), {rate / 1e6:.1f} MB/s"


# --- the copier ------------------------------------------------------------------------------


@dataclass
class _PartState:
    plan: PlannedPart
    data: bytes | None = None
    read: bool = False
    hashed: bool = False
    uploaded: bool = False
    info: PartInfo | None = None
    reused: bool = False


@dataclass
class _Run:
    """State shared by the coordinating thread and the workers of one multipart copy."""

    parts: list[_PartState]
    cond: threading.Condition = field(default_factory=threading.Condition)
    in_memory: int = 0
    stop: bool = False
    failure: tuple[int, BaseException] | None = None
    readers: list[RangeReader] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)


def _check_sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"expected sha256 {value!r}: need 64 lowercase hexadecimal digits")
    return value


def _header_safe(value: str) -> str:
    # object metadata travels as HTTP headers: printable ASCII only
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in value)


class MultipartCopier:
    """Copies one source into one key; see the module documentation."""

    def __init__(
        self,
        backend: MultipartBackend,
        config: TransferConfig | None = None,
        progress: ProgressCallback | None = None,
    ):
        self.backend = backend
        self.config = config or TransferConfig()
        self.progress = progress

    def copy(
        self,
        source: RangeSource,
        key: str,
        expected_sha256: str,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> CopyResult:
        try:
            return self._copy(source, key, _check_sha256(expected_sha256), content_type, metadata, resume=True)
        finally:
            close = getattr(source, "close", None)  # sources may keep a reader from size()
            if callable(close):
                close()

    def _copy(
        self,
        source: RangeSource,
        key: str,
        expected: str,
        content_type: str,
        metadata: Mapping[str, str] | None,
        resume: bool,
    ) -> CopyResult:
        where = self.backend.describe(key)
        started = time.monotonic()
        try:
            size = source.size()
        except Exception as exc:
            raise TransferError(f"{where}: cannot read the size of {source.name}: {exc}", key) from exc
        present = self.backend.head(key)
        if present is not None and present.sha256 == expected and present.size == size:
            log.info("%s: already present with sha256 %s, %d bytes: skipped", where, expected, size)
            return CopyResult(key, size, expected, 0, 0, 0, True, time.monotonic() - started)
        if present is not None:
            log.info("%s: present with sha256 %s, %d bytes: replacing it", where, present.sha256, present.size)
        meta = {"source": _header_safe(source.name), **(metadata or {}), "sha256": expected}
        part_size = self.config.part_size or choose_part_size(size, self.config.workers)
        log.info("%s: copying %s, %d bytes in parts of %d MiB", where, source.name, size, part_size // MiB)
        if size <= part_size:
            return self._single(source, key, where, size, expected, content_type, meta, started)
        result = self._multipart(source, key, where, size, part_size, expected, content_type, meta, started, resume)
        stored = self.backend.head(key)
        if stored is None or stored.size != size:
            shown = "no object" if stored is None else f"{stored.size} bytes"
            raise TransferError(f"{where}: completed, but the store shows {shown}, expected {size} bytes", key)
        if stored.sha256 != expected:
            if not result.parts_reused:
                raise TransferError(f"{where}: stored with sha256 metadata {stored.sha256}, expected {expected}", key)
            # the resumed upload had been started for other content: its metadata is stale
            log.warning("%s: resumed upload carried sha256 metadata %s; uploading afresh", where, stored.sha256)
            self.backend.delete(key)
            return self._copy(source, key, expected, content_type, metadata, resume=False)
        return result

    # a whole object in one request: smaller than one part
    def _single(
        self,
        source: RangeSource,
        key: str,
        where: str,
        size: int,
        expected: str,
        content_type: str,
        meta: dict[str, str],
        started: float,
    ) -> CopyResult:
        reader = source.open()
        try:
            data = reader.read(0, size) if size else b""
        except Exception as exc:
            raise TransferError(f"{where}: reading {source.name}: {exc}", key) from exc
        finally:
            reader.close()
        if len(data) != size:
            raise TransferError(f"{where}: read {len(data)} bytes of {source.name}, expected {size}", key)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise DigestMismatch(where, key, expected, actual)
        self.backend.put_bytes(key, data, content_type, meta)
        seconds = time.monotonic() - started
        log.info("%s: stored %s", where, _amounts(size, size, size / seconds if seconds else 0.0))
        if self.progress:
            self.progress(size, size, size / seconds if seconds else 0.0)
        return CopyResult(key, size, expected, 1, 1, 0, False, seconds)

    def _resumable(self, key: str, where: str, plan: list[PlannedPart]) -> tuple[str | None, dict[int, PartInfo]]:
        return resumable_upload(self.backend, key, where, plan)

    def _multipart(
        self,
        source: RangeSource,
        key: str,
        where: str,
        size: int,
        part_size: int,
        expected: str,
        content_type: str,
        meta: dict[str, str],
        started: float,
        resume: bool,
    ) -> CopyResult:
        plan = plan_parts(size, part_size)
        upload_id, existing = self._resumable(key, where, plan) if resume else (None, {})
        if upload_id is None:
            upload_id = self.backend.create_multipart(key, content_type, meta)
        run = _Run([_PartState(p) for p in plan])
        progress = _Progress(where, size, self.config.log_interval_s, self.progress)
        digest = hashlib.sha256()

        def worker(state: _PartState) -> None:
            with run.cond:
                if run.stop:
                    run.in_memory -= 1
                    run.cond.notify_all()
                    return
            try:
                self._transfer_part(source, key, upload_id, existing, run, state)
                progress.add(state.plan.length)
            except BaseException as exc:
                with run.cond:
                    if run.failure is None:
                        run.failure = (state.plan.number, exc)
                    run.stop = True
                    run.in_memory -= 1
                    run.cond.notify_all()
                return
            with run.cond:
                state.uploaded = True
                if state.hashed:
                    run.in_memory -= 1
                run.cond.notify_all()

        pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="zimage-part")
        try:
            self._coordinate(run, pool, worker, digest)
        except BaseException:
            with run.cond:
                run.stop = True
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=False)
            for reader in run.readers:
                try:
                    reader.close()
                except Exception as exc:  # a close failing must not hide the real outcome
                    log.warning("%s: closing a reader of %s failed: %s", where, source.name, exc)

        if run.failure is not None:
            number, exc = run.failure
            part = plan[number - 1]
            raise TransferError(
                f"{where}: part {number} (bytes {part.offset}..{part.offset + part.length - 1}) failed: "
                f"{type(exc).__name__}: {exc}; the upload is kept so a re-run resumes it",
                key,
                number,
            ) from exc
        actual = digest.hexdigest()
        if actual != expected:
            self.backend.abort_multipart(key, upload_id)
            raise DigestMismatch(where, key, expected, actual)
        infos = [s.info for s in run.parts if s.info is not None]
        self.backend.complete_multipart(key, upload_id, infos)
        seconds = time.monotonic() - started
        reused = sum(1 for s in run.parts if s.reused)
        log.info(
            "%s: stored in %.1f s, %s; %d parts uploaded, %d reused",
            where, seconds, _amounts(size, size, size / seconds if seconds else 0.0), len(plan) - reused, reused,
        )
        return CopyResult(key, size, expected, len(plan), len(plan) - reused, reused, False, seconds)

    def _coordinate(
        self,
        run: _Run,
        pool: ThreadPoolExecutor,
        worker: Callable[[_PartState], None],
        digest: hashlib._Hash,
    ) -> None:
        """Submit parts in order as memory allows and hash them in order as they arrive.

        Parts are admitted in order, so the next part to hash always holds a slot: no deadlock."""
        limit = self.config.memory_parts
        next_submit = next_hash = 0
        count = len(run.parts)
        with run.cond:
            while True:
                if run.failure is not None:
                    return
                while next_submit < count and run.in_memory < limit:
                    run.in_memory += 1
                    pool.submit(worker, run.parts[next_submit])
                    next_submit += 1
                if next_hash == count:
                    if all(s.uploaded for s in run.parts):
                        return
                    run.cond.wait()
                    continue
                state = run.parts[next_hash]
                if not state.read:
                    run.cond.wait()
                    continue
                data, state.data = state.data, None
                run.cond.release()
                try:
                    digest.update(data or b"")  # hashlib lets go of the GIL on big buffers
                finally:
                    run.cond.acquire()
                del data
                state.hashed = True
                if state.uploaded:
                    run.in_memory -= 1
                next_hash += 1

    def _reader(self, source: RangeSource, run: _Run) -> RangeReader:
        reader: RangeReader | None = getattr(run.local, "reader", None)
        if reader is None:
            reader = source.open()
            run.local.reader = reader
            with run.cond:
                run.readers.append(reader)
        return reader

    def _transfer_part(
        self,
        source: RangeSource,
        key: str,
        upload_id: str,
        existing: dict[int, PartInfo],
        run: _Run,
        state: _PartState,
    ) -> None:
        plan = state.plan
        data = self._reader(source, run).read(plan.offset, plan.length)
        if len(data) != plan.length:
            raise EOFError(f"read {len(data)} bytes of {source.name} at {plan.offset}, expected {plan.length}")
        with run.cond:
            state.data = data
            state.read = True
            run.cond.notify_all()
        md5 = hashlib.md5(data)
        old = existing.get(plan.number)
        if old is not None and old.etag == md5.hexdigest():
            state.info = old
            state.reused = True
            return
        etag = self.backend.upload_part(key, upload_id, plan.number, data, md5.digest())
        state.info = PartInfo(plan.number, plan.length, etag)


def resumable_upload(
    backend: MultipartBackend, key: str, where: str, plan: list[PlannedPart]
) -> tuple[str | None, dict[int, PartInfo]]:
    """The newest interrupted upload of the key and its parts that fit the plan; older ones are aborted."""
    pending = backend.pending_uploads(key)
    if not pending:
        return None, {}
    pending.sort(key=lambda p: p.initiated.timestamp() if p.initiated else 0.0)
    *stale, newest = pending
    for old in stale:
        log.info("%s: aborting an older interrupted upload %s", where, old.upload_id)
        backend.abort_multipart(key, old.upload_id)
    sizes = {p.number: p.length for p in plan}
    parts = {p.number: p for p in backend.list_parts(key, newest.upload_id) if sizes.get(p.number) == p.size}
    log.info("%s: resuming upload %s with %d of %d parts present", where, newest.upload_id, len(parts), len(plan))
    return newest.upload_id, parts


def content_md5(md5: bytes) -> str:
    """The Content-MD5 header value of a part (base64 of the binary digest)."""
    return base64.b64encode(md5).decode("ascii")


def copy(
    source: RangeSource,
    backend: MultipartBackend,
    key: str,
    expected_sha256: str,
    content_type: str = "application/octet-stream",
    metadata: Mapping[str, str] | None = None,
    config: TransferConfig | None = None,
    progress: ProgressCallback | None = None,
) -> CopyResult:
    """Copy `source` into `key` of `backend`; see MultipartCopier."""
    return MultipartCopier(backend, config, progress).copy(source, key, expected_sha256, content_type, metadata)
