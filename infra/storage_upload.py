"""Staging from the storage server itself: the data mover uploads a staged file into COS where it lies.

This machine only coordinates: it creates (or resumes) the multipart upload, presigns one URL per
part, runs the data mover on the storage server over SSH with those URLs (no API key or HMAC secret
leaves this machine), checks the sha256 the mover computed against the manifest's, and completes
the upload with the parts' ETags. Bytes never pass through this machine, so staging runs at the
storage server's own disk and network speed instead of paramiko's sftp ceiling (DESIGN.md §14).

A re-run resumes as the relay does: the interrupted upload's parts that the mover reads again with
the same MD5 are kept. When the storage server has no Python 3 or cannot reach COS, nothing was
sent, and the caller may fall back to the relay (`storage.stage_path: auto`).
"""

from __future__ import annotations

import logging
import math
import shlex
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from datamover.host import BOOTSTRAP
from infra import host as remote
from infra import ssh
from infra.object_store import ObjectStore
from infra.transfer import (
    CopyResult,
    DigestMismatch,
    PartInfo,
    TransferConfig,
    TransferError,
    choose_part_size,
    plan_parts,
    resumable_upload,
)
from zimage.config import Storage

log = logging.getLogger(__name__)

MIN_URL_SECONDS = 3600
ASSUMED_RATE = 20e6  # bytes/s the URLs must last for at least; a slower upload gets URLs that expire
MAX_URL_SECONDS = 7 * 24 * 3600


class StorageCannotUpload(RuntimeError):
    """The storage server cannot upload (no Python 3, COS out of its reach, no http endpoint); nothing was sent."""

    retryable = False


def url_seconds(size: int) -> int:
    return int(min(MAX_URL_SECONDS, max(MIN_URL_SECONDS, math.ceil(size / ASSUMED_RATE) * 2)))


def _run(storage: Storage, job: dict[str, Any], on_line: Callable[[str], None]) -> dict[str, Any]:
    command = f"{shlex.quote(storage.python)} -c {shlex.quote(BOOTSTRAP)} zimage-stage"
    with ssh.connect(storage) as session:
        return remote.run_job(
            session, storage.python, "storage server", ssh.where(storage), "storage.python", command, job, on_line
        )


def check_storage_upload(storage: Storage, endpoint: str) -> str:
    """What the storage server would upload with (its Python), once it has opened a connection to
    the object store's endpoint; raises StorageCannotUpload saying why not. Writes nothing anywhere."""
    try:
        answer = _run(storage, {"action": "reach", "url": endpoint}, log.info)
    except (remote.NoPython, remote.Unreachable) as exc:
        raise StorageCannotUpload(str(exc)) from None
    parts = urllib.parse.urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"Python {answer['python']} there reaches {parts.hostname}:{port}"


def upload_from_storage(
    storage: Storage,
    store: ObjectStore,
    key: str,
    path: str,
    size: int,
    expected_sha256: str,
    content_type: str,
    metadata: Mapping[str, str],
    on_line: Callable[[str], None],
    config: TransferConfig | None = None,
) -> CopyResult:
    """Upload the file at `path` on the storage server into `key`; see the module documentation."""
    config = config or TransferConfig()
    where = store.describe(key)
    started = time.monotonic()
    present = store.head(key)
    if present is not None and present.sha256 == expected_sha256 and present.size == size:
        log.info("%s: already present with sha256 %s, %d bytes: skipped", where, expected_sha256, size)
        return CopyResult(key, size, expected_sha256, 0, 0, 0, True, time.monotonic() - started)
    part_size = config.part_size or choose_part_size(size, config.workers)
    plan = plan_parts(size, part_size)
    expires = url_seconds(size)
    if urllib.parse.urlsplit(store.describe(key)).scheme == "file":
        raise StorageCannotUpload(f"{where} is a directory on this machine: the storage server cannot upload to it")
    upload_id, existing = resumable_upload(store, key, where, plan)
    created = upload_id is None
    if upload_id is None:
        meta = {"source": path[-200:], **metadata, "sha256": expected_sha256}
        upload_id = store.create_multipart(key, content_type, meta)
    urls = [store.presign_part(key, upload_id, p.number, expires) for p in plan]
    job = {
        "action": "stage", "path": path, "size": size, "part_size": part_size,
        "parts": [
            {"number": p.number, "url": url, **({"etag": existing[p.number].etag} if p.number in existing else {})}
            for p, url in zip(plan, urls, strict=True)
        ],
        "concurrency": config.workers, "progress_every": config.log_interval_s,
    }  # fmt: skip
    try:
        answer = _run(storage, job, on_line)
    except (remote.NoPython, remote.Unreachable) as exc:
        if created:  # nothing was sent into it: leave nothing behind
            store.abort_multipart(key, upload_id)
        raise StorageCannotUpload(str(exc)) from None
    except remote.HostError as exc:
        raise TransferError(f"{where}: upload on the storage server failed: {exc}; a re-run resumes it", key) from exc
    if answer["sha256"] != expected_sha256:
        store.abort_multipart(key, upload_id)
        raise DigestMismatch(where, key, expected_sha256, answer["sha256"])
    parts = [PartInfo(p.number, p.length, answer["etags"][str(p.number)]) for p in plan]
    store.complete_multipart(key, upload_id, parts)
    stored = store.head(key)
    if stored is None or stored.size != size or stored.sha256 != expected_sha256:
        shown = "no object" if stored is None else f"{stored.size} bytes, sha256 {stored.sha256}"
        raise TransferError(f"{where}: completed, but the store shows {shown}, expected {size} bytes", key)
    seconds = time.monotonic() - started
    log.info("%s: uploaded by the storage server in %.1f s (%.1f MB/s); %d parts sent, %d kept", where, seconds,
             size / seconds / 1e6 if seconds else 0.0, answer["sent"], answer["kept"])  # fmt: skip
    return CopyResult(key, size, expected_sha256, len(plan), answer["sent"], answer["kept"], False, seconds)
