"""Object storage: the interface the flows use, and a local-directory implementation (demo, tests).

`ObjectStore` is what tasks call: small objects (`put_bytes`, `get_bytes`), listing, deletion,
streaming copies from a `RangeSource` through the transfer manager (`upload_stream`), presigned
URLs for the data mover (GET, PUT and the parts of a multipart upload) and the multipart
operations themselves. `infra.cos.CosStore` implements it on IBM COS; `LocalObjectStore` on a
directory, with the same behaviour: atomic writes, metadata (sha256, content type) kept in a
sidecar `.meta/<key>.json`, multipart uploads under `.multipart/<upload id>/`, presigned URLs as
`file://` URLs. Unlike a bucket, a directory cannot hold both `a` and `a/b`.

`file://` URL contract for the data mover in local mode: a GET URL names the file to read; a PUT
or part URL names the file to write (write a temporary file beside it and rename it into place);
the complete URL names a file to write the S3 `CompleteMultipartUpload` XML document into, and the
store assembles the object the next time the key is looked at (or on `complete_multipart`); a file
created at the abort URL aborts the upload likewise.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from infra import transfer
from infra.transfer import CopyResult, PartInfo, PendingUpload, ProgressCallback, RangeSource, TransferConfig
from zimage import objects

log = logging.getLogger(__name__)

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_META_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_LOCAL_RESERVED = (".meta", ".multipart", ".tmp")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None

    @property
    def sha256(self) -> str | None:
        return self.metadata.get("sha256")


@dataclass(frozen=True)
class ObjectEntry:
    """One line of a listing."""

    key: str
    size: int


class ObjectStoreError(RuntimeError):
    """An object store operation failed; names the store, the key, the operation and the error code."""

    def __init__(self, operation: str, where: str, code: str, detail: str = ""):
        self.operation = operation
        self.where = where
        self.code = code
        self.detail = detail
        super().__init__(f"{operation} {where}: {code}" + (f": {detail}" if detail else ""))


class ObjectNotFound(ObjectStoreError):
    pass


def check_key(key: str) -> str:
    """Keys are relative paths without empty, '.' or '..' segments (a key never leaves its prefix)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise ValueError(f"object key {key!r}: expected a relative path without empty, '.' or '..' segments")
    if len(key.encode()) > 1024:
        raise ValueError(f"object key {key[:60]!r}...: longer than 1024 bytes")
    return key


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not _META_KEY.fullmatch(name):
            raise ValueError(f"metadata name {name!r}: expected lowercase letters, digits and '-'")
        if not all(32 <= ord(c) < 127 for c in value):
            raise ValueError(f"metadata {name}: value must be printable ASCII (it travels as an HTTP header)")
        checked[name] = value
    return checked


def check_expiry(expires_s: int) -> int:
    if not 1 <= expires_s <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"presigned URL lifetime {expires_s} s: expected 1..{MAX_PRESIGN_SECONDS} (7 days)")
    return expires_s


def check_part_number(number: int) -> int:
    if not 1 <= number <= transfer.MAX_PARTS:
        raise ValueError(f"part number {number}: expected 1..{transfer.MAX_PARTS}")
    return number


def sha256_metadata(data: bytes, metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {**check_metadata(metadata), "sha256": hashlib.sha256(data).hexdigest()}


class ObjectStore(abc.ABC):
    """A bucket (or a directory standing in for one)."""

    # --- objects ---

    @abc.abstractmethod
    def describe(self, key: str = "") -> str:
        """Where a key lies, for messages: cos://bucket/key or file:///dir/key."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, content type and metadata, or None when there is none."""

    @abc.abstractmethod
    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = objects.OCTETS,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store a small object; its sha256 is recorded as metadata."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """A small object's content; ObjectNotFound when there is none."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectEntry]:
        """Objects whose key starts with prefix, sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; no error when there is none."""

    @abc.abstractmethod
    def copy_object(self, source: str, key: str) -> ObjectInfo:
        """Copy an object within the bucket, its content type and metadata with it (server-side in COS,
        in parts when large); ObjectNotFound when `source` is missing."""

    def local_path(self, key: str) -> Path | None:
        """Where the object lies on this machine, for stores that keep objects in files."""
        return None

    # --- multipart uploads (the transfer manager and the data mover use these) ---

    @abc.abstractmethod
    def create_multipart(self, key: str, content_type: str, metadata: Mapping[str, str]) -> str:
        """Start a multipart upload; metadata must be given here (S3 takes none at completion)."""

    @abc.abstractmethod
    def pending_uploads(self, key: str) -> list[PendingUpload]:
        """Multipart uploads of exactly this key that were started and neither completed nor aborted."""

    @abc.abstractmethod
    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]: ...

    @abc.abstractmethod
    def upload_part(self, key: str, upload_id: str, number: int, data: bytes, md5: bytes) -> str:
        """Upload one part; returns its ETag (without quotes)."""

    @abc.abstractmethod
    def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo] | None = None) -> ObjectInfo:
        """Assemble the parts (all listed parts when None) into the object. When the upload is gone
        but the object is there (the data mover completed it through its URL), that object is returned."""

    @abc.abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None: ...

    # --- presigned URLs ---

    @abc.abstractmethod
    def presign_get(self, key: str, expires_s: int) -> str: ...

    @abc.abstractmethod
    def presign_put(self, key: str, expires_s: int) -> str: ...

    @abc.abstractmethod
    def presign_part(self, key: str, upload_id: str, part_number: int, expires_s: int) -> str:
        """A URL to PUT one part's bytes to; the response's ETag header is the part's ETag."""

    @abc.abstractmethod
    def presign_complete(self, key: str, upload_id: str, expires_s: int) -> str:
        """A URL to POST the CompleteMultipartUpload XML document to."""

    @abc.abstractmethod
    def presign_abort(self, key: str, upload_id: str, expires_s: int) -> str:
        """A URL to DELETE to abort the multipart upload."""

    # --- built on the above ---

    def upload_stream(
        self,
        key: str,
        source: RangeSource,
        expected_sha256: str,
        content_type: str = objects.OCTETS,
        metadata: Mapping[str, str] | None = None,
        config: TransferConfig | None = None,
        progress: ProgressCallback | None = None,
    ) -> CopyResult:
        """Copy a source in parallel parts, checked against its expected sha256, resumable; skips
        the copy when the object is present with the same sha256 and size."""
        check_key(key)
        meta = check_metadata(metadata)
        return transfer.copy(source, self, key, expected_sha256, content_type, meta, config, progress)

    def upload_file(
        self,
        key: str,
        path: str | Path,
        expected_sha256: str,
        content_type: str = objects.OCTETS,
        metadata: Mapping[str, str] | None = None,
        config: TransferConfig | None = None,
        progress: ProgressCallback | None = None,
    ) -> CopyResult:
        source = transfer.LocalFileSource(Path(path))
        return self.upload_stream(key, source, expected_sha256, content_type, metadata, config, progress)

    def put_if_changed(
        self,
        key: str,
        data: bytes,
        content_type: str = objects.OCTETS,
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Store unless the object is present with the same sha256, size and content type; True when stored."""
        present = self.head(key)
        digest = hashlib.sha256(data).hexdigest()
        if (
            present is not None
            and present.sha256 == digest
            and present.size == len(data)
            and present.content_type == content_type
        ):
            log.info("%s: already present with sha256 %s: skipped", self.describe(key), digest)
            return False
        self.put_bytes(key, data, content_type, metadata)
        log.info("%s: stored %d bytes as %s", self.describe(key), len(data), content_type)
        return True


def put_auxiliary(
    store: ObjectStore, image: str, name: str, data: bytes, layout: str = objects.PER_IMAGE
) -> bool:
    """Upload one of an image's auxiliary objects (image-metadata.json, devmap, env-overrides,
    properties.json) with its content type; True when it was stored, False when already there."""
    return store.put_if_changed(objects.auxiliary_key(image, name, layout), data, objects.content_type(name))


def put_auxiliaries(store: ObjectStore, image: str, contents: Mapping[str, bytes | None], layout: str) -> list[str]:
    """Every auxiliary object of an image, by name; None removes one, so that a mover never copies an
    env-overrides or properties.json the config no longer names. Returns the keys now present."""
    present = []
    for name, data in contents.items():
        key = objects.auxiliary_key(image, name, layout)
        if data is None:
            if store.head(key) is not None:
                store.delete(key)
                log.info("%s: removed (the image names no %s now)", store.describe(key), name)
            continue
        put_auxiliary(store, image, name, data, layout)  # skipped when unchanged
        present.append(key)
    return present


def image_in_metadata(store: ObjectStore, key: str) -> str | None:
    """image.name of the image-metadata.json at `key`, if there is one that names an image."""
    if store.head(key) is None:
        return None
    try:
        name = json.loads(store.get_bytes(key)).get("image", {}).get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


# --- a directory as an object store ----------------------------------------------------------


Writer = Callable[[BinaryIO], object]


def _etag_of_parts(parts: list[PartInfo]) -> str:
    joined = b"".join(bytes.fromhex(p.etag) for p in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


class LocalObjectStore(ObjectStore):
    """Objects as files under `directory`; what the demo and the local data mover use."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).resolve()
        for sub in _LOCAL_RESERVED:
            (self.directory / sub).mkdir(parents=True, exist_ok=True)

    # --- paths ---

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/")[0] in _LOCAL_RESERVED:
            raise ValueError(f"object key {key!r}: {key.split('/')[0]}/ is reserved by the local object store")
        return self.directory / key

    def _meta_path(self, key: str) -> Path:
        return self.directory / ".meta" / f"{key}.json"

    def _upload_dir(self, upload_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise ObjectStoreError("multipart", self.describe(), "NoSuchUpload", f"upload id {upload_id!r}")
        return self.directory / ".multipart" / upload_id

    def describe(self, key: str = "") -> str:
        return f"{self.directory.as_uri()}/{key}"

    def _error(self, operation: str, key: str, exc: OSError) -> ObjectStoreError:
        code = "NoSuchKey" if isinstance(exc, FileNotFoundError) else type(exc).__name__
        cls = ObjectNotFound if code == "NoSuchKey" else ObjectStoreError
        return cls(operation, self.describe(key), code, exc.strerror or str(exc))

    def _write_atomic(self, target: Path, write: Writer) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory / ".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _store(self, key: str, write: Writer, content_type: str, metadata: Mapping[str, str]) -> ObjectInfo:
        path = self._path(key)
        meta_path = self._meta_path(key)
        # the old sidecar goes first: a crash in between leaves an object without a digest (re-uploaded
        # by the next run), never new content with the old digest
        meta_path.unlink(missing_ok=True)
        self._write_atomic(path, write)
        stat = path.stat()
        sidecar = {
            "content_type": content_type,
            "metadata": dict(metadata),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }
        self._write_atomic(meta_path, lambda out: out.write(json.dumps(sidecar, indent=1).encode()))
        return ObjectInfo(key, stat.st_size, content_type, dict(metadata))

    # --- objects ---

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        self._settle(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        try:
            sidecar = json.loads(self._meta_path(key).read_text())
        except FileNotFoundError:
            return ObjectInfo(key, stat.st_size)
        if (sidecar.get("size"), sidecar.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            # rewritten by other means (a file:// PUT): the recorded digest no longer holds
            return ObjectInfo(key, stat.st_size, sidecar.get("content_type"))
        return ObjectInfo(key, stat.st_size, sidecar.get("content_type"), sidecar.get("metadata", {}))

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = objects.OCTETS,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        try:
            return self._store(key, lambda out: out.write(data), content_type, sha256_metadata(data, metadata))
        except OSError as exc:
            raise self._error("put", key, exc) from exc

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        self._settle(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise self._error("get", key, exc) from exc

    def list(self, prefix: str = "") -> list[ObjectEntry]:
        self._settle_all()
        found: list[ObjectEntry] = []
        for path in self._walk(self.directory):
            key = path.relative_to(self.directory).as_posix()
            if key.startswith(prefix):
                found.append(ObjectEntry(key, path.stat().st_size))
        return sorted(found, key=lambda e: e.key)

    def _walk(self, directory: Path) -> Iterator[Path]:
        for entry in os.scandir(directory):
            if directory == self.directory and entry.name in _LOCAL_RESERVED:
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path)

    def copy_object(self, source: str, key: str) -> ObjectInfo:
        info = self.head(source)
        if info is None:
            raise ObjectNotFound("copy", self.describe(source), "NoSuchKey")

        def write(out: BinaryIO) -> None:
            with self._path(source).open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)

        try:
            return self._store(key, write, info.content_type or objects.OCTETS, info.metadata)
        except OSError as exc:
            raise self._error("copy", key, exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        self._meta_path(key).unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        self._settle(key)
        return path

    # --- multipart ---

    def create_multipart(self, key: str, content_type: str, metadata: Mapping[str, str]) -> str:
        self._path(key)
        upload_id = uuid.uuid4().hex
        record = {
            "key": key,
            "content_type": content_type,
            "metadata": check_metadata(metadata),
            "initiated": datetime.now(UTC).isoformat(),
        }
        directory = self._upload_dir(upload_id)
        directory.mkdir()
        self._write_atomic(directory / "upload.json", lambda out: out.write(json.dumps(record).encode()))
        return upload_id

    def _uploads(self) -> Iterator[tuple[str, dict[str, Any], Path]]:
        for directory in sorted((self.directory / ".multipart").iterdir()):
            try:
                record = json.loads((directory / "upload.json").read_text())
            except FileNotFoundError:
                continue
            yield directory.name, record, directory

    def pending_uploads(self, key: str) -> list[PendingUpload]:
        self._settle(key)
        return [
            PendingUpload(key, upload_id, datetime.fromisoformat(record["initiated"]))
            for upload_id, record, _ in self._uploads()
            if record["key"] == key
        ]

    def _record(self, key: str, upload_id: str) -> dict[str, Any]:
        try:
            record = json.loads((self._upload_dir(upload_id) / "upload.json").read_text())
        except FileNotFoundError:
            raise ObjectStoreError("multipart", self.describe(key), "NoSuchUpload", f"upload id {upload_id}") from None
        if record["key"] != key:
            raise ObjectStoreError(
                "multipart", self.describe(key), "NoSuchUpload", f"upload {upload_id} is for {record['key']}"
            )
        return record

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        self._record(key, upload_id)
        directory = self._upload_dir(upload_id)
        parts: list[PartInfo] = []
        for path in sorted(directory.glob("part-[0-9][0-9][0-9][0-9][0-9]")):
            etag_file = path.with_suffix(".md5")
            # a part written through a file:// URL has no .md5 file yet
            etag = etag_file.read_text().strip() if etag_file.exists() else _file_md5(path)
            parts.append(PartInfo(int(path.name[5:]), path.stat().st_size, etag))
        return parts

    def _part_path(self, upload_id: str, number: int) -> Path:
        return self._upload_dir(upload_id) / f"part-{check_part_number(number):05d}"

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes, md5: bytes) -> str:
        self._record(key, upload_id)
        if hashlib.md5(data).digest() != md5:
            raise ObjectStoreError("upload part", self.describe(key), "BadDigest", f"part {number}")
        path = self._part_path(upload_id, number)
        etag = md5.hex()
        try:
            path.with_suffix(".md5").unlink(missing_ok=True)
            self._write_atomic(path, lambda out: out.write(data))
            path.with_suffix(".md5").write_text(etag)
        except OSError as exc:
            raise self._error(f"upload part {number}", key, exc) from exc
        return etag

    def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo] | None = None) -> ObjectInfo:
        try:
            record = self._record(key, upload_id)
        except ObjectStoreError:
            # completed already (through the complete URL), as COS answers NoSuchUpload then
            present = self.head(key)
            if present is None:
                raise
            return present
        present = {p.number: p for p in self.list_parts(key, upload_id)}
        chosen = sorted(present.values() if parts is None else parts, key=lambda p: p.number)
        if not chosen:
            raise ObjectStoreError("complete", self.describe(key), "MalformedXML", "no parts")
        for part in chosen:
            have = present.get(part.number)
            if have is None or have.etag != part.etag.strip('"'):
                raise ObjectStoreError("complete", self.describe(key), "InvalidPart", f"part {part.number}")
        for part in chosen[:-1]:
            if present[part.number].size < transfer.S3_MIN_PART_SIZE:
                raise ObjectStoreError("complete", self.describe(key), "EntityTooSmall", f"part {part.number}")

        def assemble(out: BinaryIO) -> None:
            for part in chosen:
                with self._part_path(upload_id, part.number).open("rb") as src:
                    shutil.copyfileobj(src, out, 8 * transfer.MiB)

        try:
            info = self._store(key, assemble, record["content_type"], record["metadata"])
        except OSError as exc:
            raise self._error("complete", key, exc) from exc
        shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)
        etag = _etag_of_parts([present[p.number] for p in chosen])
        return ObjectInfo(info.key, info.size, info.content_type, info.metadata, etag)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._record(key, upload_id)
        shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)

    # a complete document or an abort marker written through a file:// URL takes effect on the next look
    def _settle(self, key: str | None = None) -> None:
        for upload_id, record, directory in list(self._uploads()):
            if key is not None and record["key"] != key:
                continue
            if (directory / "abort").exists():
                shutil.rmtree(directory, ignore_errors=True)
            elif (directory / "complete.xml").exists():
                self._complete_from_document(record["key"], upload_id, directory / "complete.xml")

    def _settle_all(self) -> None:
        self._settle(None)

    def _complete_from_document(self, key: str, upload_id: str, document: Path) -> None:
        try:
            try:
                root = ET.fromstring(document.read_bytes())
                parts = [
                    PartInfo(int(_text(p, "PartNumber")), 0, _text(p, "ETag").strip('"'))
                    for p in root.iter()
                    if _local_name(p.tag) == "Part"
                ]
            except (ET.ParseError, ValueError) as exc:
                raise ObjectStoreError("complete", self.describe(key), "MalformedXML", str(exc)) from exc
            self.complete_multipart(key, upload_id, parts)
        except ObjectStoreError:
            # as in S3 a rejected completion leaves the upload pending; it is not retried on every look
            document.replace(document.with_suffix(".rejected"))
            raise

    # --- presigned URLs: plain file URLs here ---

    def presign_get(self, key: str, expires_s: int) -> str:
        check_expiry(expires_s)
        return self.local_path(key).as_uri()

    def presign_put(self, key: str, expires_s: int) -> str:
        check_expiry(expires_s)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.as_uri()

    def presign_part(self, key: str, upload_id: str, part_number: int, expires_s: int) -> str:
        check_expiry(expires_s)
        self._record(key, upload_id)
        return self._part_path(upload_id, part_number).as_uri()

    def presign_complete(self, key: str, upload_id: str, expires_s: int) -> str:
        check_expiry(expires_s)
        self._record(key, upload_id)
        return (self._upload_dir(upload_id) / "complete.xml").as_uri()

    def presign_abort(self, key: str, upload_id: str, expires_s: int) -> str:
        check_expiry(expires_s)
        self._record(key, upload_id)
        return (self._upload_dir(upload_id) / "abort").as_uri()


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local_name(child.tag) == name and child.text:
            return child.text.strip()
    raise ValueError(f"CompleteMultipartUpload part without {name}")


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as src:
        while chunk := src.read(8 * transfer.MiB):
            digest.update(chunk)
    return digest.hexdigest()
