"""The bucket side of an export and its landing on the storage server (DESIGN.md §17).

The mover VSI gets presigned URLs only (datamover/export.py documents the documents): its
configuration, a PUT for its inventory, a GET of the plan this module writes once the inventory is
checked (one multipart upload per volume), and PUTs for progress and report. The orchestrator then
streams each gzip object onto the storage server under a temporary name, checks the gzip's sha256
on the storage server and the uncompressed sha256 on the way, and renames it into place; the
generation's manifest is written last, so a half-landed export is never a generation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datamover.export import PLAN_SCHEMA, SCHEMA
from datamover.package import build_zipapp
from infra import mover_config
from infra.cloudinit import render_user_data
from infra.object_store import ObjectStore
from infra.staging_store import StagingStore, verify_file, write_manifest
from zimage import export, objects, staging
from zimage.export import Inventory
from zimage.manifests import ComponentManifest, StagedVolume

log = logging.getLogger(__name__)

BLOCK = 1 << 20
PLAN_WAIT_S = 3 * 3600  # the mover waits this long for the plan after its inventory
WHEELS_PREFIX = "zimage-export"  # accelerator wheels of exports: <prefix>/accelerators/<wheel>, kept like a deploy's


class LandingError(RuntimeError):
    retryable = False


@dataclass(frozen=True)
class ExportConfigObject:
    key: str
    config_url: str  # short-lived presigned GET for the user data
    expires_s: int


def write_config(
    store: ObjectStore,
    instance: str,
    build: str,
    lifetime: mover_config.Lifetimes,
    *,
    jobs: int | None = None,
    progress_every: float = 15.0,
    plan_poll: float = 5.0,
    wheels: Sequence[Path] = (),
) -> ExportConfigObject:
    """The mover's export configuration: presigned URLs only, valid as long as the run waits."""
    expires = lifetime.urls
    staged = mover_config.stage_wheels(store, WHEELS_PREFIX, wheels) if wheels else []

    def at(name: str) -> str:
        return export.key(instance, build, name)

    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "build": build,
        "attachment": export.ATTACHMENT,
        "inventory": {"type": "put", "url": store.presign_put(at("inventory.json"), expires)},
        "plan": {"url": store.presign_get(at("plan.json"), expires)},
        "progress": {"type": "put", "url": store.presign_put(at(objects.PROGRESS), expires)},
        "report": {"type": "put", "url": store.presign_put(at(objects.REPORT), expires)},
        "plan_wait": min(PLAN_WAIT_S, expires),
        "plan_poll": plan_poll,
        "progress_every": progress_every,
    }
    if jobs:
        doc["jobs"] = jobs
    if staged:
        doc["accelerators"] = [
            {"name": name, "url": store.presign_get(k, expires), "sha256": digest} for name, k, digest in staged
        ]
    key = at("export-config.json")
    store.put_bytes(key, json.dumps(doc, indent=1).encode(), objects.JSON)
    return ExportConfigObject(key, store.presign_get(key, lifetime.config), expires)


def user_data(config_url: str) -> str:
    """The export mover's user data: the data mover zipapp, run in export mode, and one URL."""
    return render_user_data(build_zipapp(mode="export"), config_url, mode="export")


def read_json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    if store.head(key) is None:
        return None
    try:
        value = json.loads(store.get_bytes(key))
    except ValueError:
        return None  # caught half-written: read again next time
    return value if isinstance(value, dict) else None


def write_plan(store: ObjectStore, instance: str, build: str, inventory: Inventory, expires_s: int) -> dict[str, str]:
    """A multipart upload per volume, its URLs in plan.json; returns volser -> upload id."""
    volumes: dict[str, Any] = {}
    uploads: dict[str, str] = {}
    for vol in inventory.volumes:
        key = export.volume_key(instance, build, vol.volser)
        upload_id = store.create_multipart(key, objects.GZIP, {"volser": vol.volser})
        uploads[vol.volser] = upload_id
        part_size, count = export.part_plan(vol.bytes)
        volumes[vol.volser] = {
            "type": "multipart",
            "part_size": part_size,
            "part_urls": [store.presign_part(key, upload_id, n, expires_s) for n in range(1, count + 1)],
            "complete_url": store.presign_complete(key, upload_id, expires_s),
            "abort_url": store.presign_abort(key, upload_id, expires_s),
            "concurrency": 1,
        }
    body = json.dumps({"schema": PLAN_SCHEMA, "volumes": volumes}).encode()
    store.put_bytes(export.key(instance, build, "plan.json"), body, objects.JSON)
    log.info("export plan of build %s: %d volume(s), %d bytes", build, len(volumes), len(body))
    return uploads


def discard(store: ObjectStore, instance: str, build: str) -> list[str]:
    """Everything the export put in the bucket, unfinished uploads first (their parts cost storage)."""
    done = []
    inventory = read_json(store, export.key(instance, build, "inventory.json")) or {}
    for vol in inventory.get("volumes") or []:
        key = export.volume_key(instance, build, vol["volser"])
        for upload in store.pending_uploads(key):
            store.abort_multipart(key, upload.upload_id)
            done.append(f"aborted the upload of {key}")
    for item in store.list(export.prefix(instance, build)):
        store.delete(item.key)
        done.append(f"deleted {item.key}")
    return done


def discard_export(store: ObjectStore, instance: str, build: str) -> list[str]:
    """`discard` for a build that was an export (its configuration or inventory is in the bucket);
    nothing for any other build, whose prefix may hold a product (a deploy's qcow2)."""
    names = ("export-config.json", "inventory.json")
    if all(store.head(export.key(instance, build, n)) is None for n in names):
        return []
    return discard(store, instance, build)


# --- landing ---------------------------------------------------------------------------------------


def _stream(url: str, total: int, progress: Callable[[int], None]) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=120) as body:
        done = 0
        while block := body.read(BLOCK):
            done += len(block)
            progress(done)
            yield block
    if done != total:
        raise LandingError(f"read {done} bytes of {total}")


def land_volume(
    store: ObjectStore,
    staging_store: StagingStore,
    instance: str,
    build: str,
    directory: str,
    generation: str,
    devtype: str,
    reported: dict[str, Any],
    progress: Callable[[int], None] = lambda done: None,
) -> StagedVolume:
    """Copy one exported volume (as the mover reported it) onto the storage server and verify both digests."""
    volser = reported["volser"]
    key = export.volume_key(instance, build, volser)
    head = store.head(key)
    if head is None or head.size != reported["gz_bytes"]:
        raise LandingError(
            f"{store.describe(key)}: {head.size if head else 'no'} bytes, the mover sent {reported['gz_bytes']}"
        )
    final = posixpath.join(directory, staging.volume_file_name(volser, generation))
    temp = final + staging.TEMP_SUFFIX
    started_at = datetime.now(UTC)
    started = time.monotonic()
    raw_sha, inflater, raw = hashlib.sha256(), zlib.decompressobj(31), 0

    def checked(blocks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal raw
        limit = 64 * BLOCK  # bounded output: a block of zeros inflates a thousandfold
        for block in blocks:
            data, out = block, b""
            while data or len(out) == limit:
                out = inflater.decompress(data, limit)
                raw_sha.update(out)
                raw += len(out)
                data = inflater.unconsumed_tail
            yield block

    url = store.presign_get(key, 6 * 3600)
    try:
        staging_store.write_stream(temp, checked(_stream(url, head.size, progress)))
        if not inflater.eof or raw != reported["bytes"] or raw_sha.hexdigest() != reported["sha256"]:
            raise LandingError(
                f"volume {volser}: the gzip inflates to {raw} bytes with sha256 {raw_sha.hexdigest()}, "
                f"the mover read {reported['bytes']} with {reported['sha256']}"
            )
        verify_file(staging_store, temp, reported["gz_bytes"], reported["gz_sha256"])  # computed on the server
        staging_store.rename(temp, final)
    except BaseException:
        staging_store.delete(temp)
        raise
    seconds = time.monotonic() - started
    log.info(
        "landed %s on %s: %d bytes (%d gzip) in %.1f s, %.1f MB/s",
        volser,
        staging_store.where(),
        raw,
        head.size,
        seconds,
        head.size / 1e6 / max(seconds, 1e-6),
    )
    return StagedVolume(
        volser=volser,
        devnum=reported["devnum"],
        devtype=devtype,
        file_name=posixpath.basename(final),
        bytes=raw,
        gz_bytes=head.size,
        sha256=reported["sha256"],
        gz_sha256=reported["gz_sha256"],
        started=started_at,
        finished=datetime.now(UTC),
    )


def write_generation(
    staging_store: StagingStore,
    directory: str,
    component: str,
    system: str,
    kind: str,
    generation: str,
    volumes: list[StagedVolume],
) -> str:
    manifest = ComponentManifest(
        component=component,
        system=system,
        type=kind,
        generation=generation,
        created=datetime.now(UTC),
        volumes=volumes,
    )
    return write_manifest(staging_store, directory, manifest)
