"""On the storage server: upload one staged file into COS where it lies (DESIGN.md §14).

The orchestrator creates the multipart upload and sends, over SSH, a job with one presigned URL per
part; no API key or HMAC secret reaches this machine, only URLs that expire and name the parts of
one upload. The file is read once, in order: its sha256 and each part's MD5 are computed as it goes,
and a part is PUT (with Content-MD5, retried) from the page cache while the next ones are read. A
part the upload already holds with that MD5 as its ETag (an interrupted run) is kept. The answer
gives the sha256 and every part's ETag; the orchestrator checks the digest and completes the upload.

    {"action": "stage", "path": "/abs/file.gz", "size": N, "part_size": P,
     "parts": [{"number": 1, "url": "https://...", "etag"?: "..."}, ...], "concurrency"?: 4,
     "progress_every"?: 2.0}
"""

import base64
import hashlib
import os
import socket
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

from datamover import http as web
from datamover.errors import MoverError
from datamover.progress import MB, log
from datamover.upload import FileSlice, put_part

READ_BLOCK = 8 << 20
MAX_PARTS = 10000


class Unreachable(MoverError):
    """The object store does not answer from here; nothing was sent."""


class _Part:
    def __init__(self, doc: Any, index: int) -> None:
        if not isinstance(doc, dict) or not {"number", "url"} <= set(doc) <= {"number", "url", "etag"}:
            raise MoverError(f"stage job: parts[{index}]: expected number, url and optionally etag")
        if doc["number"] != index + 1:
            raise MoverError(f"stage job: parts[{index}]: number {doc['number']!r}, expected {index + 1}")
        if urllib.parse.urlsplit(str(doc["url"])).scheme not in ("http", "https"):
            raise MoverError(f"stage job: parts[{index}]: not an http(s) URL")
        self.number: int = doc["number"]
        self.url: str = doc["url"]
        self.etag: Optional[str] = doc.get("etag")


def _positive(job: dict[str, Any], key: str, default: Any = None) -> Any:
    value = job.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise MoverError(f"stage job: {key}: expected a positive number, got {value!r}")
    return value


def check_reachable(url: str, timeout: float = 10.0) -> None:
    """A TCP connection to the object store, before anything is read or sent."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as exc:
        raise Unreachable(f"the object store {parts.hostname}:{port} cannot be reached from here: {exc}") from None


def _etag(value: Optional[str]) -> str:
    return (value or "").strip('"').lower()


class _Stage:
    def __init__(self, job: dict[str, Any]) -> None:
        self.path = job.get("path")
        if not isinstance(self.path, str) or not os.path.isabs(self.path) or ".." in self.path.split("/"):
            raise MoverError(f"stage job: path {self.path!r}: expected an absolute path without '..'")
        self.size = int(_positive(job, "size"))
        self.part_size = int(_positive(job, "part_size"))
        raw = job.get("parts")
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_PARTS:
            raise MoverError(f"stage job: parts: expected 1 to {MAX_PARTS} parts")
        self.parts = [_Part(doc, i) for i, doc in enumerate(raw)]
        if len(self.parts) != max(1, -(-self.size // self.part_size)):
            raise MoverError(
                f"stage job: {len(self.parts)} parts for {self.size} bytes in parts of {self.part_size}"
            )
        self.concurrency = int(_positive(job, "concurrency", 4))
        self.every = float(_positive(job, "progress_every", 2.0))
        self.name = os.path.basename(self.path)
        self.lock = threading.Lock()
        self.sent = 0
        self.started = time.monotonic()
        self.last = 0.0

    def _length(self, part: _Part) -> int:
        return min(self.part_size, self.size - (part.number - 1) * self.part_size)

    def _put(self, fd: int, part: _Part, md5: bytes) -> str:
        offset, length = (part.number - 1) * self.part_size, self._length(part)
        what = f"upload {self.name} part {part.number}"
        headers = {"Content-MD5": base64.b64encode(md5).decode()}
        # each try reads the part again from the file (the page cache): nothing is held in memory
        etag = web.retry(what, 4, lambda: put_part(part.url, headers, FileSlice(fd, offset, length), length, what))
        with self.lock:
            self.sent += length
            now = time.monotonic()
            if now - self.last >= self.every or self.sent == self.size:
                self.last = now
                rate = self.sent / MB / max(now - self.started, 1e-6)
                log(f"upload {self.name}: {self.sent / MB:,.1f}/{self.size / MB:,.1f} MB sent ({rate:,.1f} MB/s)")
        return etag

    def run(self) -> dict[str, Any]:
        found = os.path.getsize(self.path)
        if found != self.size:
            raise MoverError(f"{self.path}: {found} bytes, the manifest says {self.size}")
        check_reachable(self.parts[0].url)
        digest = hashlib.sha256()
        etags: dict[str, str] = {}
        kept = 0
        futures: list[tuple[_Part, Future[str]]] = []
        slots = threading.BoundedSemaphore(self.concurrency)  # parts read ahead of their upload
        failed = threading.Event()
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="part") as pool:
                for part in self.parts:
                    md5 = hashlib.md5()
                    offset, left = (part.number - 1) * self.part_size, self._length(part)
                    while left:
                        block = os.pread(fd, min(READ_BLOCK, left), offset)
                        if not block:
                            raise MoverError(f"{self.path}: ended at {offset} bytes, expected {self.size}")
                        digest.update(block)
                        md5.update(block)
                        offset, left = offset + len(block), left - len(block)
                    if part.etag and _etag(part.etag) == md5.hexdigest():
                        etags[str(part.number)] = part.etag
                        kept += 1
                        continue
                    slots.acquire()
                    if failed.is_set():
                        break  # a part failed for good: stop reading, its error is raised below
                    future = pool.submit(self._put, fd, part, md5.digest())
                    future.add_done_callback(lambda f: (f.exception() and failed.set(), slots.release()))
                    futures.append((part, future))
                for part, future in futures:
                    etags[str(part.number)] = future.result()
        finally:
            os.close(fd)
        seconds = time.monotonic() - self.started
        log(f"upload {self.name}: {self.sent / MB:,.1f} MB sent in {len(futures)} part(s), {kept} kept, "
            f"{seconds:.1f} s ({self.sent / MB / max(seconds, 1e-6):,.1f} MB/s)")
        return {"sha256": digest.hexdigest(), "etags": etags, "sent": len(futures), "kept": kept,
                "bytes_sent": self.sent, "seconds": round(seconds, 3)}  # fmt: skip


def stage(job: dict[str, Any]) -> dict[str, Any]:
    return _Stage(job).run()
