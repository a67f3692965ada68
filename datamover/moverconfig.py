"""The mover configuration: the JSON document the orchestrator writes for the mover VSI.

User data is limited to 64 KiB, so it carries only one short-lived URL to this document, which holds
everything else. Schema (unknown keys are errors; "?" marks optional keys):

{
  "schema": "zimage-mover-config/1",
  "image": "zos25-dev",                     // must equal image.name of image-metadata.json
  "build"?: "b1a2b3c4",                     // the orchestrator's build id, echoed in progress and report
  "layout": "all-in-data",                  // or "boot-split"
  "jobs"?: 17,                              // volumes in parallel (default: CPUs + 1)
  "retries"?: 2, "retry_delay"?: 5.0,       // a failed volume is tried again from the start
  "progress_every"?: 15,                    // seconds between progress.json uploads
  "s3"?: {                                  // HMAC access, needed by every {"type": "s3"} below
    "endpoint": "https://s3.direct.jp-tok.cloud-object-storage.appdomain.cloud",
    "region": "jp-tok", "bucket": "wazi-custom-image-bucket",
    "access_key_id": "...", "secret_access_key": "..."},
  "objects":                                // where image-metadata.json, devmap,
                                            // env-overrides/properties.json and the volumes are
      {"type": "urls", "urls": {"image-metadata.json": "https://...presigned GET...", ...}}
    | {"type": "s3", "prefix": "zos25-dev/"},
  "qcow2":                                  // where <image>.qcow2 goes
      {"type": "put", "url": "https://...presigned PUT...", "headers"?: {...}}
    | {"type": "multipart", "part_size": 134217728,   // the orchestrator created the upload
       "part_urls": ["...presigned UploadPart 1...", "...2...", ...],
       "complete_url": "...presigned CompleteMultipartUpload (POST, with uploadId)...",
       "abort_url"?: "...presigned AbortMultipartUpload (DELETE)...", "concurrency"?: 4}
    | {"type": "s3", "key": "zos25-dev.qcow2", "part_size"?: 134217728, "concurrency"?: 4},
  "progress": {"type": "put", "url": "...", "headers"?: {...}} | {"type": "s3", "key": "..."},
  "report":   {"type": "put", "url": "...", "headers"?: {...}} | {"type": "s3", "key": "..."},
  "attachments": {"data": "<volume attachment name>", "boot": "...", "scratch": "..."},
  "accelerators"?: [                        // wheels of zlib-ng or isal for the VSI's Python:
    {"name": "zlib_ng-1.1.0-cp310-...whl",  // inflate several times faster than zlib
     "url": "https://...presigned GET...", "sha256": "..."}],
  "rewrites"?: [                            // members whose records get the image's network symbols,
    {"volser": "MN25S2", "dsn": "SYS1.PARMLIB", "member": "IEASYM00",   // in place once converted
     "records": ["<base64 of each new record, as long as the old one>", ...]}]
}

progress.json is uploaded every progress_every seconds while the mover runs; report.json is uploaded
last, on success and on failure, and tells the orchestrator that the mover has finished and how.
"""

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from datamover.accel import Wheel
from datamover.errors import MoverError
from datamover.layout import LAYOUTS
from datamover.names import check_image_name
from datamover.s3 import S3Credentials
from datamover.sources import safe_key

SCHEMA = "zimage-mover-config/1"
MIN_PART = 5 << 20  # S3's smallest part (all but the last)
MAX_PARTS = 10000
_VPC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class PutTarget:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class S3Target:
    key: str
    part_size: Optional[int] = None
    concurrency: int = 4


@dataclass(frozen=True)
class PresignedMultipart:
    part_size: int
    part_urls: tuple[str, ...]
    complete_url: str
    abort_url: Optional[str] = None
    concurrency: int = 4


@dataclass(frozen=True)
class MoverConfig:
    image: str
    layout: str
    objects: Union[dict[str, str], str]  # name -> presigned URL, or an S3 key prefix
    qcow2: Union[PutTarget, PresignedMultipart, S3Target]
    progress: Union[PutTarget, S3Target]
    report: Union[PutTarget, S3Target]
    attachments: dict[str, str]  # role (data, boot, scratch) -> volume attachment name
    s3: Optional[S3Credentials] = None
    jobs: Optional[int] = None
    retries: int = 2
    retry_delay: float = 5.0
    progress_every: float = 15.0
    accelerators: tuple[Wheel, ...] = ()
    build: Optional[str] = None  # echoed, so that the orchestrator never takes another build's report
    rewrites: Optional[list] = None  # checked by datamover.rewrite.member_jobs, which only the VSI's run needs


class _Doc:
    """Typed access to one JSON object that rejects unknown keys; errors name the field path."""

    def __init__(self, value: object, where: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(value, dict):
            raise MoverError(f"mover configuration: {where}: expected an object")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise MoverError(f"mover configuration: {where}: unknown key(s) {', '.join(unknown)}")
        self.value = value
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: Union[type, tuple[type, ...]], default: Any = ...) -> Any:
        if key not in self.value:
            if default is ...:
                raise MoverError(f"mover configuration: {self.path(key)}: missing")
            return default
        value = self.value[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise MoverError(f"mover configuration: {self.path(key)}: {type(value).__name__} is the wrong type")
        return value

    def url(self, key: str) -> str:
        return _url(self.get(key, str), self.path(key))

    def positive(self, key: str, default: Any = ..., kind: Union[type, tuple[type, ...]] = int) -> Any:
        value = self.get(key, kind, default)
        if value is not None and value <= 0:
            raise MoverError(f"mover configuration: {self.path(key)}: must be positive")
        return value


def _url(value: object, where: str) -> str:
    if not isinstance(value, str) or urllib.parse.urlsplit(value).scheme not in ("http", "https"):
        raise MoverError(f"mover configuration: {where}: not an http(s) URL")
    return value


def _headers(doc: _Doc) -> dict[str, str]:
    headers = doc.get("headers", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise MoverError(f"mover configuration: {doc.path('headers')}: names and values must be strings")
    return headers


def _key(value: str, where: str) -> str:
    try:
        return safe_key(value)
    except MoverError as exc:
        raise MoverError(f"mover configuration: {where}: {exc}") from None


def _put_or_s3(value: object, where: str) -> Union[PutTarget, S3Target]:
    kind = _Doc(value, where, ("type", "url", "headers", "key")).get("type", str)
    if kind == "put":
        doc = _Doc(value, where, ("type", "url", "headers"))
        return PutTarget(doc.url("url"), _headers(doc))
    if kind == "s3":
        doc = _Doc(value, where, ("type", "key"))
        return S3Target(_key(doc.get("key", str), doc.path("key")))
    raise MoverError(f"mover configuration: {where}.type: {kind!r} is not put or s3")


def _part_size(doc: _Doc, default: Any = ...) -> Optional[int]:
    size = doc.positive("part_size", default)
    if size is not None and size < MIN_PART:
        raise MoverError(f"mover configuration: {doc.path('part_size')}: at least {MIN_PART} bytes")
    return size


def presigned_multipart(value: object, where: str) -> PresignedMultipart:
    """A multipart upload the orchestrator created: part URLs, complete and abort URLs."""
    doc = _Doc(value, where, ("type", "part_size", "part_urls", "complete_url", "abort_url", "concurrency"))
    urls = doc.get("part_urls", list)
    if not urls or len(urls) > MAX_PARTS:
        raise MoverError(f"mover configuration: {doc.path('part_urls')}: 1 to {MAX_PARTS} URLs needed")
    abort = doc.get("abort_url", str, None)
    return PresignedMultipart(
        part_size=_part_size(doc),  # type: ignore[arg-type]
        part_urls=tuple(_url(u, f"{doc.path('part_urls')}[{i}]") for i, u in enumerate(urls)),
        complete_url=doc.url("complete_url"),
        abort_url=None if abort is None else _url(abort, doc.path("abort_url")),
        concurrency=doc.positive("concurrency", 4),
    )


def _qcow2(value: object) -> Union[PutTarget, PresignedMultipart, S3Target]:
    fields = ("type", "url", "headers", "key", "part_size", "part_urls", "complete_url", "abort_url", "concurrency")
    kind = _Doc(value, "qcow2", fields).get("type", str)
    if kind == "multipart":
        return presigned_multipart(value, "qcow2")
    if kind == "s3":
        doc = _Doc(value, "qcow2", ("type", "key", "part_size", "concurrency"))
        return S3Target(_key(doc.get("key", str), "qcow2.key"), _part_size(doc, None), doc.positive("concurrency", 4))
    if kind == "put":
        return _put_or_s3(value, "qcow2")
    raise MoverError(f"mover configuration: qcow2.type: {kind!r} is not put, multipart or s3")


def _objects(value: object) -> Union[dict[str, str], str]:
    kind = _Doc(value, "objects", ("type", "urls", "prefix")).get("type", str)
    if kind == "urls":
        urls = _Doc(value, "objects", ("type", "urls")).get("urls", dict)
        return {_key(k, f"objects.urls[{k!r}]"): _url(v, f"objects.urls[{k!r}]") for k, v in urls.items()}
    if kind == "s3":
        prefix = _Doc(value, "objects", ("type", "prefix")).get("prefix", str, "")
        if prefix and not prefix.endswith("/"):
            raise MoverError("mover configuration: objects.prefix: must be empty or end with '/'")
        if prefix:
            _key(prefix.rstrip("/"), "objects.prefix")
        return prefix
    raise MoverError(f"mover configuration: objects.type: {kind!r} is not urls or s3")


def _s3(value: object) -> S3Credentials:
    doc = _Doc(value, "s3", ("endpoint", "region", "bucket", "access_key_id", "secret_access_key"))
    return S3Credentials(
        endpoint=doc.url("endpoint"),
        region=doc.get("region", str, "us-east-1"),
        bucket=_key(doc.get("bucket", str), "s3.bucket"),
        access_key_id=doc.get("access_key_id", str),
        secret_access_key=doc.get("secret_access_key", str),
    )


def _attachments(value: object) -> dict[str, str]:
    doc = _Doc(value, "attachments", ("data", "boot", "scratch"))
    names = {}
    for role in ("data", "boot", "scratch"):
        name = doc.get(role, str)
        if not _VPC_NAME.fullmatch(name) or len(name) > 63:
            raise MoverError(f"mover configuration: attachments.{role}: {name!r} is not a VPC name")
        names[role] = name
    return names


def _wheels(value: object) -> tuple[Wheel, ...]:
    if not isinstance(value, list):
        raise MoverError("mover configuration: accelerators: expected a list")
    wheels = []
    for i, item in enumerate(value):
        doc = _Doc(item, f"accelerators[{i}]", ("name", "url", "sha256"))
        digest = doc.get("sha256", str).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise MoverError(f"mover configuration: {doc.path('sha256')}: not a sha256 hex digest")
        wheels.append(Wheel(_key(doc.get("name", str), doc.path("name")), doc.url("url"), digest))
    return tuple(wheels)


def _build(value: Any) -> Optional[str]:
    if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[a-z][a-z0-9]{1,31}", value)):
        raise MoverError(f"mover configuration: build: {value!r} is not a build id")
    return value


def load_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MoverError(f"{what}: not valid JSON: {exc}") from exc


def parse_config(raw: bytes) -> MoverConfig:
    """Parse and validate a mover configuration; errors name the field."""
    value = load_json(raw, "mover configuration")
    top = _Doc(
        value, "",
        ("schema", "image", "build", "layout", "jobs", "retries", "retry_delay", "progress_every", "s3", "objects",
         "qcow2", "progress", "report", "attachments", "accelerators", "rewrites"),
    )
    if top.get("schema", str) != SCHEMA:
        raise MoverError(f"mover configuration: schema: expected {SCHEMA!r}")
    layout = top.get("layout", str, "all-in-data")
    if layout not in LAYOUTS:
        raise MoverError(f"mover configuration: layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    config = MoverConfig(
        image=check_image_name(top.get("image", str), "mover configuration: image"),
        layout=layout,
        objects=_objects(top.get("objects", dict)),
        qcow2=_qcow2(top.get("qcow2", dict)),
        progress=_put_or_s3(top.get("progress", dict), "progress"),
        report=_put_or_s3(top.get("report", dict), "report"),
        attachments=_attachments(top.get("attachments", dict)),
        s3=_s3(value["s3"]) if "s3" in value else None,
        jobs=top.positive("jobs", None),
        retries=top.get("retries", int, 2),
        retry_delay=top.get("retry_delay", (int, float), 5.0),
        progress_every=top.positive("progress_every", 15.0, (int, float)),
        accelerators=_wheels(value.get("accelerators", [])),
        build=_build(value.get("build")),
        rewrites=top.get("rewrites", list, None),
    )
    uses_s3 = isinstance(config.objects, str) or any(
        isinstance(t, S3Target) for t in (config.qcow2, config.progress, config.report)
    )
    if uses_s3 and config.s3 is None:
        raise MoverError("mover configuration: s3: missing, but a \"type\": \"s3\" form needs it")
    return config
