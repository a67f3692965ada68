"""The mover configuration of one build (datamover/moverconfig.py documents its schema).

The mover VSI gets no key at all: every object it reads is a presigned GET URL, the qcow2 goes up
through a multipart upload the orchestrator creates here (one presigned URL per part, sized for
the boot disk, plus the complete and abort URLs), and progress.json / report.json are presigned
PUTs, all under the build's own prefix (`<image>/builds/<build>/`). Issued URLs cannot be revoked,
so they live no longer than the run can use them: the time to provision and boot the mover plus
the run's conversion deadline, at most 7 days (SigV4's limit). The document is stored as
`<image>/builds/<build>/mover-config.json`; the user data carries one GET URL to it that lives
only until the mover has booted (`config_url`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamover.moverconfig import MAX_PARTS, MIN_PART, SCHEMA
from datamover.package import build_zipapp
from infra.cloudinit import render_user_data
from infra.object_store import MAX_PRESIGN_SECONDS, ObjectStore
from zimage import objects, sizing
from zimage.build import BuiltImage
from zimage.sizing import GB

log = logging.getLogger(__name__)

MiB = 1 << 20
PART_SIZE = 128 * MiB  # what the mover's own multipart uses by default
BOOT_S = 20 * 60  # from a running instance to cloud-init fetching the configuration
ROLES = ("data", "boot", "scratch")


@dataclass(frozen=True)
class Lifetimes:
    """Seconds the presigned URLs of one build stay valid."""

    urls: int  # every URL the mover uses until it has uploaded its report
    config: int  # the user data's URL to the configuration, read once at first boot


def lifetimes(deadline_s: float, provisioning_s: float) -> Lifetimes:
    """From the run's own waits: the instance may take `provisioning_s` to run (the URLs are
    signed before it is created), then boots, then the orchestrator waits `deadline_s` for the
    report; past that the run has given up and the URLs only serve a mover nobody waits for."""
    config = math.ceil(provisioning_s + BOOT_S)
    urls = math.ceil(provisioning_s + BOOT_S + deadline_s)
    if urls > MAX_PRESIGN_SECONDS:
        raise ValueError(
            f"the conversion deadline ({deadline_s / 3600:.1f} h) and the provisioning wait need presigned URLs of "
            f"{urls / 3600:.1f} h; the most SigV4 allows is {MAX_PRESIGN_SECONDS / 3600:.0f} h"
        )
    return Lifetimes(urls=urls, config=min(config, urls))


def qcow2_parts(boot_disk_gb: int, part_size: int = PART_SIZE) -> tuple[int, int]:
    """(part size, number of part URLs) enough for the qcow2 of a full boot disk of that size."""
    largest = math.ceil(boot_disk_gb * GB * sizing.QCOW2_OVERHEAD) + 64 * MiB
    size = max(part_size, MIN_PART, math.ceil(largest / MAX_PARTS / MiB) * MiB)
    return size, min(MAX_PARTS, math.ceil(largest / size))


@dataclass(frozen=True)
class MoverConfigObject:
    key: str
    upload_id: str  # of the qcow2's multipart upload (teardown aborts every unfinished one of the build)
    config_url: str  # short-lived presigned GET of the document, for the user data
    parts: int
    expires_s: int
    bytes: int


def object_urls(
    store: ObjectStore, built: BuiltImage, expires_s: int, key_layout: str = objects.PER_IMAGE
) -> dict[str, str]:
    """Presigned GET URLs for every object the mover reads, by the name it asks for (the object's
    name without the image's prefix); env-overrides and properties.json only when staged."""
    keys = objects.ImageObjects(built.image, key_layout)
    urls = {
        objects.IMAGE_METADATA: store.presign_get(keys.metadata, expires_s),
        objects.DEVMAP: store.presign_get(keys.devmap, expires_s),
    }
    for name, key in ((objects.ENV_OVERRIDES, keys.env_overrides), (objects.PROPERTIES, keys.properties)):
        if store.head(key) is not None:
            urls[name] = store.presign_get(key, expires_s)
    for vol in built.volumes:
        urls[vol.file_name] = store.presign_get(keys.volume(vol.file_name), expires_s)
    return urls


def stage_wheels(store: ObjectStore, image: str, wheels: Sequence[Path]) -> list[tuple[str, str, str]]:
    """Upload the accelerator wheels (skipped when already there): (file name, key, sha256) each."""
    staged = []
    for wheel in wheels:
        data = wheel.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        key = objects.accelerator_key(image, wheel.name)
        found = store.head(key)
        if found is None or found.sha256 != digest:
            store.put_bytes(key, data, objects.OCTETS)
        staged.append((wheel.name, key, digest))
    return staged


def check_wheels(wheels: Sequence[Path]) -> None:
    """Before anything is created: every configured wheel can be read."""
    for wheel in wheels:
        if not wheel.is_file():
            raise FileNotFoundError(f"target.mover.accelerator_wheels: {wheel} is not a file on this machine")


def document(
    store: ObjectStore,
    built: BuiltImage,
    build: str,
    *,
    layout: str,
    key_layout: str = objects.PER_IMAGE,
    attachments: Mapping[str, str],
    upload_id: str,
    boot_disk_gb: int,
    expires_s: int,
    jobs: int | None = None,
    progress_every: float = 15.0,
    wheels: Sequence[tuple[str, str, str]] = (),
    rewrites: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], int]:
    """The mover configuration (as a dict) and how many part URLs it holds."""
    image = built.image
    missing = [r for r in ROLES if r not in attachments]
    if missing:
        raise ValueError(f"mover configuration: attachment names missing for {', '.join(missing)}")
    key = objects.qcow2_key(image, build)
    part_size, count = qcow2_parts(boot_disk_gb)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "image": image,
        "build": build,
        "layout": layout,
        "progress_every": progress_every,
        "objects": {"type": "urls", "urls": object_urls(store, built, expires_s, key_layout)},
        "qcow2": {
            "type": "multipart",
            "part_size": part_size,
            "part_urls": [store.presign_part(key, upload_id, n, expires_s) for n in range(1, count + 1)],
            "complete_url": store.presign_complete(key, upload_id, expires_s),
            "abort_url": store.presign_abort(key, upload_id, expires_s),
            "concurrency": 4,
        },
        "progress": {"type": "put", "url": store.presign_put(objects.progress_key(image, build), expires_s)},
        "report": {"type": "put", "url": store.presign_put(objects.report_key(image, build), expires_s)},
        "attachments": {role: attachments[role] for role in ROLES},
    }
    if jobs:
        doc["jobs"] = jobs
    if rewrites:
        doc["rewrites"] = list(rewrites)
    if wheels:
        doc["accelerators"] = [
            {"name": name, "url": store.presign_get(key, expires_s), "sha256": digest} for name, key, digest in wheels
        ]
    return doc, count


def write(
    store: ObjectStore,
    built: BuiltImage,
    build: str,
    *,
    layout: str,
    key_layout: str = objects.PER_IMAGE,
    attachments: Mapping[str, str],
    boot_disk_gb: int,
    lifetime: Lifetimes,
    jobs: int | None = None,
    progress_every: float = 15.0,
    wheels: Sequence[Path] = (),
    rewrites: Sequence[Mapping[str, Any]] | None = None,
) -> MoverConfigObject:
    """Start the qcow2's multipart upload, store the mover configuration and presign the URL the
    user data carries, all under the build's prefix (nothing of an earlier build is reused)."""
    image = built.image
    expires = lifetime.urls
    staged_wheels = stage_wheels(store, image, wheels)
    meta = {"image": image, "build": build}
    upload_id = store.create_multipart(objects.qcow2_key(image, build), objects.OCTETS, meta)
    doc, parts = document(
        store, built, build, layout=layout, key_layout=key_layout, attachments=attachments, upload_id=upload_id,
        boot_disk_gb=boot_disk_gb, expires_s=expires, jobs=jobs, progress_every=progress_every, wheels=staged_wheels,
        rewrites=rewrites,
    )
    body = json.dumps(doc, indent=1).encode()
    key = objects.mover_config_key(image, build)
    store.put_bytes(key, body, objects.JSON)
    url = store.presign_get(key, lifetime.config)
    log.info(
        "mover configuration %s: %d object URLs, %d qcow2 part URLs, %d bytes, URLs valid %.1f h "
        "(the configuration's own %.0f min), %d member rewrite(s)",
        store.describe(key), len(doc["objects"]["urls"]), parts, len(body), expires / 3600, lifetime.config / 60,
        len(rewrites or ()),
    )
    return MoverConfigObject(key, upload_id, url, parts, expires, len(body))


def user_data(config_url: str) -> str:
    """The cloud-init user data of the mover: the data mover zipapp and the URL of its configuration."""
    return render_user_data(build_zipapp(mode="vsi"), config_url)  # only what the VSI's run imports: 64 KiB


def discard(store: ObjectStore, image: str, build: str) -> list[str]:
    """After the run: abort every unfinished upload of the build's qcow2 (its parts cost storage;
    the key is the build's alone, so no upload id needs to be known) and delete the configuration
    (it holds live URLs). Returns what was done."""
    done = []
    key = objects.qcow2_key(image, build)
    for upload in store.pending_uploads(key):
        store.abort_multipart(key, upload.upload_id)
        done.append(f"aborted the unfinished upload {upload.upload_id} of {key}")
    config = objects.mover_config_key(image, build)
    if store.head(config) is not None:
        store.delete(config)
        done.append(f"deleted {config}")
    return done
