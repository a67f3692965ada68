"""Minimal HTTP(S) client on http.client: one connection per request, URLs never logged with their
query (a presigned URL's query is a credential)."""

import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Optional, Union

from datamover.errors import MoverError

TIMEOUT = 120.0
SEND_BLOCK = 1 << 20
Body = Union[bytes, Any, None]  # bytes, or an object with read(n) (then Content-Length is required)
TRANSIENT = (OSError, http.client.HTTPException)


class HttpError(MoverError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def public(url: str) -> str:
    """The URL without query and fragment, safe to put in logs and reports."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def request(
    method: str,
    url: str,
    headers: Optional[Mapping[str, str]] = None,
    body: Body = None,
    timeout: float = TIMEOUT,
) -> http.client.HTTPResponse:
    """Send a request and return the open response (the caller reads and closes it)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.netloc, timeout=timeout, context=ssl.create_default_context(), blocksize=SEND_BLOCK
        )
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout, blocksize=SEND_BLOCK)
    else:
        raise MoverError(f"unsupported URL scheme {parts.scheme!r} in {public(url)}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn.request(method, target, body=body, headers=dict(headers or {}))
    return conn.getresponse()


def expect(resp: http.client.HTTPResponse, what: str, ok: tuple[int, ...] = (200,)) -> None:
    """Raise HttpError naming `what` unless the status is one of `ok` (the body is consumed)."""
    if resp.status in ok:
        return
    detail = resp.read(600).decode("utf-8", "replace").strip().replace("\n", " ")
    resp.close()
    hint = " (access denied: wrong credentials or expired presigned URL?)" if resp.status == 403 else ""
    raise HttpError(f"{what}: HTTP {resp.status} {resp.reason}{hint}: {detail[:300]}", resp.status)


def call(
    method: str,
    url: str,
    what: str,
    headers: Optional[Mapping[str, str]] = None,
    body: Optional[bytes] = None,
    ok: tuple[int, ...] = (200,),
    attempts: int = 4,
) -> tuple[http.client.HTTPResponse, bytes]:
    """A small request with its whole answer, retried on network errors and 5xx/429."""
    return retry(what, attempts, lambda: _call_once(method, url, what, headers, body, ok))


def _call_once(
    method: str,
    url: str,
    what: str,
    headers: Optional[Mapping[str, str]],
    body: Optional[bytes],
    ok: tuple[int, ...],
) -> tuple[http.client.HTTPResponse, bytes]:
    resp = request(method, url, headers, body)
    expect(resp, what, ok)
    data = resp.read()
    resp.close()
    return resp, data


def retry(what: str, attempts: int, func: Callable[[], Any], delay: float = 1.0) -> Any:
    """Run func, again after transient failures (network errors, HTTP 5xx and 429)."""
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except HttpError as exc:
            if (exc.status < 500 and exc.status != 429) or attempt == attempts:
                raise
        except TRANSIENT as exc:
            if attempt == attempts:
                raise MoverError(f"{what}: {type(exc).__name__}: {exc}") from exc
        time.sleep(delay * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def get_json(url: str, what: str, headers: Optional[Mapping[str, str]] = None) -> Any:
    _resp, data = call("GET", url, what, headers)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MoverError(f"{what}: not valid JSON: {exc}") from exc


class ResumingReader:
    """Reads a streamed object; after a dropped connection it reopens at the current offset with a
    Range request, so a long download survives network hiccups without starting over."""

    def __init__(
        self,
        opener: Callable[[int], http.client.HTTPResponse],
        what: str,
        total: Optional[int],
        resumes: int = 5,
    ) -> None:
        self._opener = opener
        self._what = what
        self._total = total
        self._resumes = resumes
        self._offset = 0
        self._resp: Optional[http.client.HTTPResponse] = None

    def read(self, size: int) -> bytes:
        while True:
            try:
                if self._resp is None:
                    self._resp = self._opener(self._offset)
                data = self._resp.read(size)
            except TRANSIENT as exc:
                self._drop(f"{type(exc).__name__}: {exc}")
                continue
            if data or self._total is None or self._offset >= self._total:
                self._offset += len(data)
                return data
            self._drop(f"connection closed at byte {self._offset} of {self._total}")

    def _drop(self, reason: str) -> None:
        self.close()
        if self._resumes <= 0:
            raise MoverError(f"{self._what}: download failed: {reason}")
        self._resumes -= 1
        time.sleep(1.0)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None


def range_header(offset: int) -> dict[str, str]:
    return {"Range": f"bytes={offset}-"} if offset else {}


def content_length(resp: http.client.HTTPResponse, what: str) -> int:
    """Total object size from a ranged (Content-Range) or plain (Content-Length) response."""
    crange = resp.getheader("Content-Range")
    if crange and "/" in crange and not crange.endswith("/*"):
        return int(crange.rsplit("/", 1)[1])
    length = resp.getheader("Content-Length")
    if length is None:
        raise MoverError(f"{what}: the server gives no object size")
    return int(length)
