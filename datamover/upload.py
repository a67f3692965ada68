"""Uploads: small JSON objects (progress, report) and the qcow2 (one PUT, or multipart with
parallel parts read straight from the file, never held in memory)."""

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Union

from datamover import http as web
from datamover.errors import MoverError
from datamover.moverconfig import MAX_PARTS, PresignedMultipart, PutTarget, S3Target
from datamover.progress import MB, log
from datamover.s3 import S3Client, check_complete_answer, complete_body

DEFAULT_PART = 128 << 20
Target = Union[PutTarget, S3Target]


class FileSlice:
    """A byte range of a file as a readable body for http.client."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd, self._offset, self._left = fd, offset, length

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = os.pread(self._fd, size, self._offset) if size else b""
        self._offset += len(data)
        self._left -= len(data)
        return data


class Uploader:
    def __init__(self, s3: Optional[S3Client]) -> None:
        self._s3 = s3

    def _client(self) -> S3Client:
        if self._s3 is None:
            raise MoverError("an s3 upload target needs the s3 credentials of the mover configuration")
        return self._s3

    def put_bytes(self, target: Target, data: bytes, content_type: str, what: str) -> None:
        if isinstance(target, S3Target):
            self._client().put(target.key, data, content_type)
            return
        headers = {"Content-Length": str(len(data)), "Content-Type": content_type, **target.headers}
        web.call("PUT", target.url, f"upload {what}", headers, data)

    def upload_file(self, path: str, spec: Union[PutTarget, PresignedMultipart, S3Target], what: str) -> dict[str, Any]:
        size = os.path.getsize(path)
        start = time.monotonic()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if isinstance(spec, PutTarget):
                parts = 1
                self._put_file(fd, size, spec, what)
            elif isinstance(spec, PresignedMultipart):
                parts = self._presigned_multipart(fd, size, spec, what)
            else:
                parts = self._s3_multipart(fd, size, spec, what)
        finally:
            os.close(fd)
        seconds = time.monotonic() - start
        log(f"uploaded {what}: {size / MB:,.1f} MB in {parts} part(s), {seconds:.1f} s "
            f"({size / MB / max(seconds, 1e-6):,.1f} MB/s)")
        return {"bytes": size, "parts": parts, "seconds": round(seconds, 3)}

    def _put_file(self, fd: int, size: int, spec: PutTarget, what: str) -> None:
        def once() -> None:
            headers = {"Content-Length": str(size), **spec.headers}
            resp = web.request("PUT", spec.url, headers, FileSlice(fd, 0, size))
            web.expect(resp, f"upload {what}")
            resp.read()
            resp.close()

        web.retry(f"upload {what}", 4, once)

    def _presigned_multipart(self, fd: int, size: int, spec: PresignedMultipart, what: str) -> int:
        count = max(1, -(-size // spec.part_size))
        if count > len(spec.part_urls):
            raise MoverError(
                f"upload {what}: {size} bytes need {count} parts of {spec.part_size} bytes, "
                f"the mover configuration presigned {len(spec.part_urls)}"
            )

        def send(number: int, body: FileSlice, length: int) -> str:
            return put_part(spec.part_urls[number - 1], {}, body, length, f"upload {what} part {number}")

        try:
            etags = _parts(fd, size, spec.part_size, spec.concurrency, send, what)
            complete_presigned(spec, etags, what)
        except BaseException:
            abort_presigned(spec, what)
            raise
        return count

    def _s3_multipart(self, fd: int, size: int, spec: S3Target, what: str) -> int:
        client = self._client()
        # S3 allows 10,000 parts: grow the part for large files, in whole MiB
        mib = 1 << 20
        part = max(spec.part_size or DEFAULT_PART, -(-size // MAX_PARTS // mib) * mib)
        upload_id = client.create_multipart(spec.key)

        def send(number: int, body: FileSlice, length: int) -> str:
            url, headers = client.part_url(spec.key, upload_id, number)
            return put_part(url, headers, body, length, f"upload {what} part {number}")

        try:
            etags = _parts(fd, size, part, spec.concurrency, send, what)
            client.complete_multipart(spec.key, upload_id, etags)
        except BaseException:
            _quietly(lambda: client.abort_multipart(spec.key, upload_id))
            raise
        return len(etags)


def complete_presigned(spec: PresignedMultipart, etags: list[str], what: str) -> None:
    _, answer = web.call("POST", spec.complete_url, f"complete upload {what}",
                         {"Content-Type": "application/xml"}, complete_body(etags))
    check_complete_answer(answer, what)


def abort_presigned(spec: PresignedMultipart, what: str) -> None:
    """After a failure: the parts sent so far would cost storage until the orchestrator aborts them."""
    if spec.abort_url:
        _quietly(lambda: web.call("DELETE", spec.abort_url or "", f"abort upload {what}", ok=(200, 204)))


def send_part(url: str, data: bytes, what: str) -> str:
    """One part held in memory, retried on transient failures; its ETag."""
    return web.retry(what, 4, lambda: put_part(url, {}, data, len(data), what))


def put_part(url: str, headers: dict[str, str], body: Union[FileSlice, bytes], length: int, what: str) -> str:
    resp = web.request("PUT", url, {**headers, "Content-Length": str(length)}, body)
    web.expect(resp, what)
    resp.read()
    resp.close()
    etag = resp.getheader("ETag")
    if not etag:
        raise MoverError(f"{what}: the answer has no ETag")
    return etag


def _parts(
    fd: int, size: int, part: int, concurrency: int, send: Callable[[int, FileSlice, int], str], what: str
) -> list[str]:
    count = max(1, -(-size // part))
    done = [0]
    lock = threading.Lock()
    start = time.monotonic()

    def one(number: int) -> str:
        offset = (number - 1) * part
        length = min(part, size - offset)
        # each try reads the part afresh from the file
        etag = web.retry(f"{what} part {number}", 4, lambda: send(number, FileSlice(fd, offset, length), length))
        with lock:
            done[0] += length
            rate = done[0] / MB / max(time.monotonic() - start, 1e-6)
            log(f"upload {what}: {done[0] / MB:,.1f}/{size / MB:,.1f} MB ({rate:,.1f} MB/s)")
        return etag

    with ThreadPoolExecutor(min(concurrency, count), thread_name_prefix="part") as pool:
        return list(pool.map(one, range(1, count + 1)))


def _quietly(action: Callable[[], Any]) -> None:
    """Clean-up after a failure: its own failure is logged, the original error is what counts."""
    try:
        action()
    except Exception as exc:
        log(f"warning: clean-up failed: {exc}")
