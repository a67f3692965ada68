"""Where the objects come from: a local directory, presigned HTTP(S) URLs, or an S3 bucket."""

import os
from typing import Optional, Protocol

from datamover import http as web
from datamover.errors import MoverError
from datamover.names import check_object_name
from datamover.s3 import S3Client

SMALL_OBJECT_LIMIT = 16 << 20  # metadata, devmap, properties: refuse anything absurdly large


class MissingObject(MoverError):
    pass


class Reader(Protocol):
    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


class ObjectSource(Protocol):
    def describe(self) -> str: ...

    def size(self, name: str) -> int:
        """Size of the object; MissingObject when it does not exist."""
        ...

    def open(self, name: str) -> Reader: ...

    def fetch(self, name: str) -> bytes:
        """The whole (small) object; MissingObject when it does not exist."""
        ...


def safe_key(name: str) -> str:
    """Object names are relative paths whose every component is a safe name."""
    for part in name.split("/"):
        check_object_name(part, f"object name {name!r}")
    return name


def fetch_optional(source: ObjectSource, name: str) -> Optional[bytes]:
    try:
        return source.fetch(name)
    except MissingObject:
        return None


class LocalSource:
    def __init__(self, root: str) -> None:
        if not os.path.isdir(root):
            raise MoverError(f"object directory {root} does not exist")
        self.root = root

    def describe(self) -> str:
        return self.root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, safe_key(name))

    def size(self, name: str) -> int:
        try:
            return os.stat(self._path(name)).st_size
        except FileNotFoundError:
            raise MissingObject(f"object {name} not found in {self.root}") from None

    def open(self, name: str) -> Reader:
        try:
            return open(self._path(name), "rb", buffering=0)
        except FileNotFoundError:
            raise MissingObject(f"object {name} not found in {self.root}") from None

    def fetch(self, name: str) -> bytes:
        with self.open(name) as handle:  # type: ignore[attr-defined]
            return _limited(handle.read(SMALL_OBJECT_LIMIT + 1), name)


def _limited(data: bytes, name: str) -> bytes:
    if len(data) > SMALL_OBJECT_LIMIT:
        raise MoverError(f"object {name} is larger than {SMALL_OBJECT_LIMIT} bytes")
    return data


class _RemoteSource:
    """Reading and resuming shared by the network sources: they differ in how a range is opened."""

    def size(self, name: str) -> int:
        raise NotImplementedError

    def _open_at(self, name: str, offset: int) -> "web.http.client.HTTPResponse":
        raise NotImplementedError

    def open(self, name: str) -> Reader:
        return web.ResumingReader(lambda offset: self._open_at(name, offset), f"object {name}", self.size(name))

    def fetch(self, name: str) -> bytes:
        def once() -> bytes:
            resp = self._open_at(name, 0)
            data = resp.read(SMALL_OBJECT_LIMIT + 1)
            resp.close()
            return data

        return _limited(web.retry(f"object {name}", 4, once), name)


class UrlSource(_RemoteSource):
    """Objects named by presigned GET URLs (the VSI then needs no key at all)."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    def describe(self) -> str:
        return f"{len(self.urls)} presigned URLs"

    def _url(self, name: str) -> str:
        url = self.urls.get(safe_key(name))
        if url is None:
            raise MissingObject(f"object {name}: the mover configuration has no URL for it")
        return url

    def _open_at(self, name: str, offset: int) -> "web.http.client.HTTPResponse":
        resp = web.request("GET", self._url(name), web.range_header(offset))
        if resp.status == 404:
            resp.close()
            raise MissingObject(f"object {name} not found ({web.public(self._url(name))})")
        web.expect(resp, f"object {name}", (206,) if offset else (200,))
        return resp

    def size(self, name: str) -> int:
        # a presigned GET URL allows only GET: ask for one byte and read the size from Content-Range
        def probe() -> int:
            resp = web.request("GET", self._url(name), {"Range": "bytes=0-0"})
            if resp.status == 404:
                resp.close()
                raise MissingObject(f"object {name} not found ({web.public(self._url(name))})")
            if resp.status == 416:  # empty object
                resp.close()
                return 0
            web.expect(resp, f"object {name}", (200, 206))
            size = web.content_length(resp, f"object {name}")
            resp.close()
            return size

        return web.retry(f"object {name}", 4, probe)


class S3Source(_RemoteSource):
    """Objects under a key prefix of a bucket, read with HMAC credentials."""

    def __init__(self, client: S3Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def describe(self) -> str:
        return self.client.where(self.prefix)

    def _key(self, name: str) -> str:
        return self.prefix + safe_key(name)

    def size(self, name: str) -> int:
        try:
            return self.client.size(self._key(name))
        except web.HttpError as exc:
            if exc.status == 404:
                raise MissingObject(f"object {name} not found at {self.client.where(self._key(name))}") from None
            raise

    def _open_at(self, name: str, offset: int) -> "web.http.client.HTTPResponse":
        try:
            return self.client.get(self._key(name), offset)
        except web.HttpError as exc:
            if exc.status == 404:
                raise MissingObject(f"object {name} not found at {self.client.where(self._key(name))}") from None
            raise

