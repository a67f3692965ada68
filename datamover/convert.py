"""One volume: stream -> decompress -> verify -> sparse write, in constant memory, with retries."""

import errno
import hashlib
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional, Union

from datamover import ckd
from datamover.codec import GzipError, gunzip, passthrough
from datamover.errors import Cancelled, MoverError, VolumeError
from datamover.manifest import VolumeEntry
from datamover.pipeline import Consumer, Feed, Prefetcher, ThreadedConsumer
from datamover.progress import MB, Progress, log
from datamover.sink import BlockWriter, SparseWriter
from datamover.sources import MissingObject, ObjectSource

# compressed bytes per read: small enough that the inflater's unconsumed input, copied at every call
# that fills OUT_CHUNK, stays small; the reader keeps PREFETCH of them ahead
IN_CHUNK = 256 << 10
PREFETCH = 16
OUT_CHUNK = 1 << 20  # most decompressed bytes held at once (bounds memory on highly compressed data)


@dataclass
class VolumeResult:
    name: str
    file_name: str
    target: str  # "data" or "boot"
    state: str = "pending"  # pending | succeeded | failed | cancelled
    bytes: int = 0
    written: int = 0  # bytes not left as holes
    gz_bytes: int = 0
    sha256: Optional[str] = None
    gz_sha256: Optional[str] = None
    seconds: float = 0.0
    attempts: int = 0
    checks: dict[str, str] = field(default_factory=dict)
    error: Optional[str] = None
    retryable: bool = False  # failed, but a later run may pass (not a missing object, bad bytes or a full disk)
    deployed_sha256: Optional[str] = None  # after members were rewritten in place; sha256 stays the extraction's

    def as_json(self) -> dict[str, Any]:
        doc = {k.replace("_", "-"): v for k, v in self.__dict__.items()}
        doc["mb-per-s"] = round(self.bytes / MB / self.seconds, 1) if self.seconds > 0 else None
        return doc


@dataclass(frozen=True)
class Settings:
    zmod: ModuleType
    retries: int = 2  # attempts after the first
    retry_delay: float = 5.0
    sync: bool = True  # fsync each volume file when done


def convert_volume(
    vol: VolumeEntry,
    target: str,
    source: ObjectSource,
    dest: Union[str, Callable[[], BlockWriter]],  # a file path, or what opens the volume's writer
    progress: Progress,
    cancel: threading.Event,
    settings: Settings,
    pipelined: bool = True,
) -> VolumeResult:
    """`pipelined`: read, inflate and hash + write on threads of their own (datamover.pipeline);
    else all on the caller's thread."""
    result = VolumeResult(vol.name, vol.file_name, target)
    for attempt in range(1, settings.retries + 2):
        if cancel.is_set():
            result.state = "cancelled"
            break
        result.attempts = attempt
        progress.begin(vol.name)
        start = time.monotonic()
        try:
            _convert_once(vol, source, dest, progress, cancel, settings, pipelined, result)
        except Cancelled as exc:
            result.state, result.error = "cancelled", str(exc)
            break
        except (MoverError, OSError) as exc:
            message = str(exc) if isinstance(exc, VolumeError) else f"volume {vol.name}: {exc}"
            # a missing object or a full disk stays so: trying again only loses time
            final = (
                isinstance(exc, MissingObject)
                or (isinstance(exc, VolumeError) and not exc.retryable)
                or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
            )
            if final or attempt > settings.retries:
                result.state, result.error, result.retryable = "failed", message, not final
                break
            log(f"{message}; retrying from the start (attempt {attempt + 1} of {settings.retries + 1})")
            time.sleep(settings.retry_delay)
            continue
        result.seconds = round(time.monotonic() - start, 3)
        result.state = "succeeded"
        log(
            f"volume {vol.name}: {result.bytes / MB:,.1f} MB in {result.seconds:.2f} s "
            f"({result.bytes / MB / max(result.seconds, 1e-6):,.0f} MB/s), {result.written / MB:,.1f} MB "
            f"written, the rest holes; {result.checks.get('vol1', '')}"
        )
        break
    progress.end(vol.name, result.state)
    return result


def _convert_once(
    vol: VolumeEntry,
    source: ObjectSource,
    dest: Union[str, Callable[[], BlockWriter]],
    progress: Progress,
    cancel: threading.Event,
    settings: Settings,
    pipelined: bool,
    result: VolumeResult,
) -> None:
    checks: dict[str, str] = {}
    digest = hashlib.sha256()
    # the compressed bytes' sha256 only where the volume has none of its own: with it, the volume's
    # sha256 proves every byte written, and a second hash would cost a tenth of the CPU for nothing
    hash_gz = vol.sha256 is None
    with ExitStack() as cleanup:  # in reverse: stop the sink thread, close the file, stop the reader
        reader, on_read = source.open(vol.file_name), lambda n: progress.advance(vol.name, 0, n)
        feed = (
            Prefetcher(reader, IN_CHUNK, on_read, PREFETCH, hash_gz)
            if pipelined
            else Feed(reader, IN_CHUNK, on_read, hash_gz)
        )
        cleanup.callback(feed.close)
        writer = SparseWriter(dest) if isinstance(dest, str) else dest()
        cleanup.callback(writer.abort)

        def sink(out: bytes) -> None:  # pipelined, on its own thread: hashing and writing overlap inflating
            digest.update(out)
            writer.write(out)
            progress.advance(vol.name, len(out), 0)

        consumer = ThreadedConsumer(sink) if pipelined else Consumer(sink)
        cleanup.callback(consumer.abort)
        chunks = gunzip(feed, settings.zmod, OUT_CHUNK) if vol.compression == "gzip" else passthrough(feed)
        head = b""
        try:
            for out in chunks:
                if cancel.is_set():
                    raise Cancelled(f"volume {vol.name}: cancelled because another volume failed")
                if "vol1" not in checks:
                    head += out[: ckd.HEAD_BYTES - len(head)]
                    if len(head) >= ckd.HEAD_BYTES:
                        checks["vol1"] = _check_label(vol, head)
                consumer.put(out)
        except GzipError as exc:
            raise VolumeError(vol.name, f"object {vol.file_name}: {exc}") from exc
        if "vol1" not in checks:  # a volume shorter than one track
            checks["vol1"] = _check_label(vol, head)
        consumer.finish()
        writer.close(settings.sync)
    checks["gzip-crc"] = "verified" if vol.compression == "gzip" else "not applicable (uncompressed)"
    result.bytes, result.written, result.gz_bytes = writer.size, writer.written, feed.count
    result.sha256 = digest.hexdigest()
    if hash_gz:
        result.gz_sha256 = feed.digest.hexdigest()
        checks["gz-sha256"] = _compare(vol, "gz-sha256", vol.gz_sha256, result.gz_sha256)
    else:
        checks["gz-sha256"] = "not computed: the volume's sha256 and the gzip CRC verify the bytes"
    checks["size"] = _compare(vol, "size", vol.size, result.bytes)
    checks["sha256"] = _compare(vol, "sha256", vol.sha256, result.sha256)
    result.checks = checks


def _check_label(vol: VolumeEntry, head: bytes) -> str:
    ok, note = ckd.check_label(head, vol.name)
    if not ok:
        raise VolumeError(vol.name, f"object {vol.file_name}: {note}")
    return note


def _compare(vol: VolumeEntry, what: str, expected: object, actual: object) -> str:
    if expected is None:
        return f"skipped: image-metadata.json gives no {what}"
    if expected != actual:
        raise VolumeError(vol.name, f"object {vol.file_name}: {what} is {actual}, image-metadata.json says {expected}")
    return "verified"
