"""Export target: copy the z/OS volumes of a Wazi aaS data volume out through presigned URLs.

The orchestrator attaches to the mover VSI a volume made from a snapshot of a stopped server's data
volume. The mover mounts it read-only, reads its devmap and the head of every volume file (VOL1
label, geometry), uploads that inventory, waits for the plan the orchestrator answers with (one
presigned multipart upload per volume), then gzips every volume once, hashing both forms, and sends
it part by part (memory: jobs x part size, whatever the volume size). The report goes last. The
mover holds no key: every URL is presigned for this export only.

Configuration (unknown keys are errors):
{"schema": "zimage-export-config/1", "attachment": "zimage-export",
 "inventory": {"type": "put", "url": ...}, "plan": {"url": ...presigned GET, 404 until written...},
 "progress": {"type": "put", "url": ...}, "report": {"type": "put", "url": ...},
 "jobs"?: 4, "plan_wait"?: 3600, "plan_poll"?: 5, "progress_every"?: 15, "accelerators"?: [...]}
Plan: {"schema": "zimage-export-plan/1", "volumes": {"<VOLSER>": {"type": "multipart", "part_size": ...,
 "part_urls": [...], "complete_url": ..., "abort_url": ...}}}
"""

import hashlib
import json
import os
import re
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

from datamover import ckd, tools
from datamover import http as web
from datamover.accel import load_wheels
from datamover.codec import deflate_module, gzip_compressor
from datamover.errors import Cancelled, MoverError
from datamover.metadata import attachment_devices
from datamover.moverconfig import (
    PresignedMultipart,
    PutTarget,
    _build,
    _Doc,
    _put_or_s3,
    _url,
    _wheels,
    load_json,
    presigned_multipart,
)
from datamover.names import check_volser
from datamover.progress import MB, Progress, Ticker, log
from datamover.upload import Uploader, abort_presigned, complete_presigned, send_part

SCHEMA = "zimage-export-config/1"
PLAN_SCHEMA = "zimage-export-plan/1"
INVENTORY_SCHEMA = "zimage-export-inventory/1"
REPORT_SCHEMA = "zimage-export-report/1"
BLOCK = 1 << 20


@dataclass(frozen=True)
class ExportConfig:
    build: str
    attachment: str
    inventory: PutTarget
    plan_url: str
    progress: PutTarget
    report: PutTarget
    jobs: int = 4
    plan_wait: float = 3600.0
    plan_poll: float = 5.0
    progress_every: float = 15.0
    accelerators: tuple = ()


@dataclass(frozen=True)
class Device:
    """A CKD volume of the devmap, found on the mounted data volume."""

    volser: str
    devnum: str
    devtype: str
    cu: str
    path: str  # as the devmap names it
    file: str  # on this machine
    bytes: int
    cylinders: Optional[int]
    label: str


def _put(value: object, where: str) -> PutTarget:
    target = _put_or_s3(value, where)
    if not isinstance(target, PutTarget):
        raise MoverError(f"export configuration: {where}: must be a presigned PUT (the mover holds no key)")
    return target


def parse_config(raw: bytes) -> ExportConfig:
    value = load_json(raw, "export configuration")
    keys = (
        "schema",
        "build",
        "attachment",
        "inventory",
        "plan",
        "progress",
        "report",
        "jobs",
        "plan_wait",
        "plan_poll",
        "progress_every",
        "accelerators",
    )
    top = _Doc(value, "", keys)
    if top.get("schema", str) != SCHEMA:
        raise MoverError(f"export configuration: schema: expected {SCHEMA!r}")
    return ExportConfig(
        build=_build(top.get("build", str)),
        attachment=top.get("attachment", str),
        inventory=_put(top.get("inventory", dict), "inventory"),
        plan_url=_url(_Doc(top.get("plan", dict), "plan", ("url",)).get("url", str), "plan.url"),
        progress=_put(top.get("progress", dict), "progress"),
        report=_put(top.get("report", dict), "report"),
        jobs=top.positive("jobs", 4),
        plan_wait=top.positive("plan_wait", 3600.0, (int, float)),
        plan_poll=top.positive("plan_poll", 5.0, (int, float)),
        progress_every=top.positive("progress_every", 15.0, (int, float)),
        accelerators=_wheels(value.get("accelerators", [])),
    )


def parse_devmap(text: str) -> list[tuple[str, str, str, str]]:
    """(devnum, device type, control unit, path) of every device of the awsckd managers."""
    section, manager, found = "", "", []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].startswith("["):
            section, manager = words[0].lower(), ""
        elif section == "[manager]" and words[0] == "name":
            manager = words[1] if len(words) > 1 else ""
        elif section == "[manager]" and words[0] == "device" and manager == "awsckd":
            if len(words) < 5 or len(words[1]) != 4 or not all(c in "0123456789abcdefABCDEF" for c in words[1]):
                raise MoverError(
                    f"devmap line {number}: expected 'device DEVNUM DEVTYPE CUTYPE PATH': {line.strip()!r}"
                )
            found.append((words[1].upper(), words[2], words[3], words[4]))
    if not found:
        raise MoverError("devmap: no awsckd device lines, so no volume to export")
    return found


def find_devices(root: str, devmap: str) -> list[Device]:
    """The devmap's volumes on the mounted data volume, each identified by its VOL1 label."""
    entries = parse_devmap(devmap)
    base = os.path.commonpath([os.path.dirname(p) for _, _, _, p in entries])
    devices, seen = [], {}
    for devnum, devtype, cu, path in entries:
        local = os.path.realpath(os.path.join(root, os.path.relpath(path, base)))
        if not local.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(local):
            raise MoverError(f"devmap device {devnum}: {path} is not a file on the data volume")
        with open(local, "rb") as handle:
            head = handle.read(ckd.HEAD_BYTES)
        name = os.path.basename(local)
        volser = ckd.label_volser(head)
        if volser is None and head[:8] == ckd.UNCOMPRESSED_ID:
            raise MoverError(f"devmap device {devnum}: {path} is a CKD_P370 image without a VOL1 label")
        if volser is not None and re.fullmatch(r"[A-Z0-9@#$]{1,6}", name) and name != volser:
            raise MoverError(f"devmap device {devnum}: {path}: VOL1 label names {volser!r}, the file is named {name!r}")
        volser = volser or check_volser(name, f"devmap device {devnum}: file name")
        note = ckd.check_label(head, volser)[1]
        if volser in seen:
            raise MoverError(f"devmap devices {seen[volser]} and {devnum} both hold volume {volser}")
        seen[volser] = devnum
        size = os.path.getsize(local)
        devices.append(Device(volser, devnum, devtype, cu, path, local, size, ckd.cylinders(head, size), note))
    return devices


def parse_plan(raw: bytes, volsers: list[str]) -> dict[str, PresignedMultipart]:
    value = load_json(raw, "export plan")
    doc = _Doc(value, "plan", ("schema", "volumes"))
    if doc.get("schema", str) != PLAN_SCHEMA:
        raise MoverError(f"export plan: schema: expected {PLAN_SCHEMA!r}")
    volumes = doc.get("volumes", dict)
    if sorted(volumes) != sorted(volsers):
        raise MoverError(f"export plan names {', '.join(sorted(volumes))}, the data volume holds {', '.join(volsers)}")
    return {v: presigned_multipart(volumes[v], f"plan.volumes.{v}") for v in volsers}


def _wait_plan(config: ExportConfig, volsers: list[str]) -> dict[str, PresignedMultipart]:
    deadline = time.monotonic() + config.plan_wait
    while True:
        try:
            _, raw = web.call("GET", config.plan_url, "export plan", attempts=2)
            return parse_plan(raw, volsers)
        except web.HttpError as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise MoverError(f"the orchestrator wrote no export plan within {config.plan_wait:.0f} s")
        time.sleep(config.plan_poll)


def export_volume(
    dev: Device, spec: PresignedMultipart, zmod: Any, progress: Progress, stop: threading.Event
) -> dict[str, Any]:
    """gzip one volume file into its multipart upload; sha256 of both forms."""
    what = f"volume {dev.volser}"
    raw_sha, gz_sha = hashlib.sha256(), hashlib.sha256()
    comp = gzip_compressor(zmod)
    pending, etags = bytearray(), []
    counts = {"raw": 0, "gz": 0}
    started = time.monotonic()

    def send(data: bytes) -> None:
        if len(etags) >= len(spec.part_urls):
            raise MoverError(f"{what}: needs more than the {len(spec.part_urls)} parts presigned")
        etags.append(send_part(spec.part_urls[len(etags)], data, f"upload {what} part {len(etags) + 1}"))

    def take(out: bytes) -> None:
        gz_sha.update(out)
        counts["gz"] += len(out)
        pending.extend(out)
        while len(pending) >= spec.part_size:
            send(bytes(pending[: spec.part_size]))
            del pending[: spec.part_size]

    progress.begin(dev.volser)
    try:
        with open(dev.file, "rb") as handle:
            while True:
                if stop.is_set():
                    raise Cancelled(f"{what}: stopped because another volume failed")
                block = handle.read(BLOCK)
                if not block:
                    break
                raw_sha.update(block)
                counts["raw"] += len(block)
                take(comp.compress(block))
                progress.advance(dev.volser, len(block), len(block))
        take(comp.flush())
        send(bytes(pending))
        complete_presigned(spec, etags, what)
    except BaseException:
        progress.end(dev.volser, "failed")
        abort_presigned(spec, what)
        raise
    if counts["raw"] != dev.bytes:
        raise MoverError(f"{what}: read {counts['raw']} bytes, the file had {dev.bytes}: it changed while read")
    seconds = time.monotonic() - started
    progress.end(dev.volser, "succeeded")
    log(
        f"{what}: {dev.bytes / MB:,.1f} MB -> {counts['gz'] / MB:,.1f} MB gzip in {seconds:.1f} s "
        f"({dev.bytes / MB / max(seconds, 1e-6):,.1f} MB/s), {len(etags)} part(s)"
    )
    return {
        "volser": dev.volser,
        "devnum": dev.devnum,
        "bytes": dev.bytes,
        "gz_bytes": counts["gz"],
        "sha256": raw_sha.hexdigest(),
        "gz_sha256": gz_sha.hexdigest(),
        "parts": len(etags),
        "seconds": round(seconds, 3),
        "mb-per-s": round(dev.bytes / MB / max(seconds, 1e-6), 1),
    }


def _export_all(
    devices: list[Device], plan: dict[str, PresignedMultipart], zmod: Any, jobs: int, progress: Progress
) -> tuple[list[dict[str, Any]], list[str]]:
    stop = threading.Event()
    results, failed = [], []

    def one(dev: Device) -> Optional[dict[str, Any]]:
        try:
            return export_volume(dev, plan[dev.volser], zmod, progress, stop)
        except Cancelled:
            return None
        except (MoverError, OSError) as exc:
            stop.set()
            log(f"error: {exc}")
            failed.append(f"{dev.volser}: {exc}")
            return None

    with ThreadPoolExecutor(max(1, min(jobs, len(devices))), thread_name_prefix="export") as pool:
        for result in pool.map(one, devices):
            if result:
                results.append(result)
    return results, failed


def run_export(
    config_url: Optional[str], config_path: Optional[str], workdir: str, jobs: Optional[int], progress_every: float
) -> int:
    """Exit status 0, 1 when the export failed, 2 when not even the report could be uploaded."""
    started = time.monotonic()
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "mode": "export",
        "status": "failed",
        "error": None,
        "volumes": [],
        "volumes-failed": [],
    }
    config: Optional[ExportConfig] = None
    uploader = Uploader(None)
    progress = Progress()
    point = os.path.join(workdir, "export")
    mounted = False
    try:
        if config_path:
            with open(config_path, "rb") as handle:
                config = parse_config(handle.read())
        else:
            config = parse_config(web.call("GET", config_url or "", "export configuration")[1])
        report["accelerators"] = load_wheels(config.accelerators, workdir)
        report["deflate"], zmod = deflate_module()
        device = attachment_devices({"export": config.attachment})["export"]
        progress.set_phase("reading the devmap")
        tools.mount(device, point, read_only=True)
        mounted = True
        with open(os.path.join(point, "devmap"), encoding="utf-8", errors="replace") as handle:
            devmap = handle.read()
        devices = find_devices(point, devmap)
        inventory = {
            "schema": INVENTORY_SCHEMA,
            "devmap": devmap,
            "volumes": [{k: v for k, v in d.__dict__.items() if k != "file"} for d in devices],
        }
        uploader.put_bytes(config.inventory, json.dumps(inventory).encode(), "application/json", "inventory.json")
        log(f"inventory uploaded: {len(devices)} volume(s), {sum(d.bytes for d in devices) / MB:,.1f} MB")
        progress.set_phase("waiting for the plan")
        plan = _wait_plan(config, [d.volser for d in devices])
        for dev in devices:
            progress.add_volume(dev.volser, dev.bytes, dev.bytes)
        progress.set_phase("converting")
        with Ticker(progress, progress_every, _publisher(uploader, config), config.progress_every):
            report["volumes"], report["volumes-failed"] = _export_all(
                devices, plan, zmod, jobs or config.jobs, progress
            )
        if report["volumes-failed"]:
            report["error"] = f"{len(report['volumes-failed'])} volume(s) failed: {report['volumes-failed'][0]}"
    except (MoverError, OSError) as exc:
        report["error"] = str(exc)
    except Exception as exc:  # a defect: still write the report, so that nobody waits for it in vain
        traceback.print_exc()
        report["error"] = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if mounted:
            try:
                tools.umount(point)
            except MoverError as exc:
                report["error"] = report["error"] or str(exc)
    return _finish(report, config, uploader, progress, started)


def _publisher(uploader: Uploader, config: ExportConfig, status: str = "running") -> Any:
    def publish(snapshot: dict[str, Any]) -> None:
        body = json.dumps({"status": status, "build": config.build, **snapshot}).encode()
        uploader.put_bytes(config.progress, body, "application/json", "progress.json")

    return publish


def _finish(
    report: dict[str, Any], config: Optional[ExportConfig], uploader: Uploader, progress: Progress, started: float
) -> int:
    report["status"] = "failed" if report["error"] else "succeeded"
    report["seconds"] = round(time.monotonic() - started, 3)
    done = report["volumes"]
    total = sum(v["bytes"] for v in done)
    report["totals"] = {
        "volumes": len(done),
        "bytes": total,
        "gz-bytes": sum(v["gz_bytes"] for v in done),
        "mb-per-s": round(total / MB / max(report["seconds"], 1e-6), 1),
    }
    if report["error"]:
        log(f"error: {report['error']}")
    if config is None:
        log("error: no export configuration, so the report cannot be uploaded")
        return 2
    report["build"] = config.build
    try:
        _publisher(uploader, config, report["status"])(progress.snapshot())
        uploader.put_bytes(config.report, json.dumps(report, indent=1).encode(), "application/json", "report.json")
    except MoverError as exc:
        log(f"error: report upload failed: {exc}")
        return 2
    log(f"report uploaded: {report['status']}")
    return 1 if report["error"] else 0
