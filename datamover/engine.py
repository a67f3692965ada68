"""The part both targets share: read the inputs, check every object is there, convert all volumes
in parallel into their directories."""

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

from datamover.convert import Settings, VolumeResult, convert_volume
from datamover.errors import MoverError
from datamover.layout import plan_targets
from datamover.manifest import COPIED_OBJECTS, DEVMAP_OBJECT, METADATA_OBJECT, ImageManifest, parse_manifest
from datamover.progress import Progress, log
from datamover.report import Report
from datamover.sink import BlockWriter
from datamover.sources import MissingObject, ObjectSource, fetch_optional


def default_jobs() -> int:
    # the work is CPU-bound inflate + sha256 that release the GIL; one more than the CPUs keeps
    # them busy while a worker waits for the network or the disk
    return (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class Inputs:
    manifest: ImageManifest
    devmap: bytes
    copied: dict[str, bytes]  # env-overrides, properties.json when present: name -> bytes
    targets: dict[str, str]  # VOLSER -> "data" | "boot"


def read_inputs(source: ObjectSource, layout: str, report: Report) -> Inputs:
    try:
        manifest = parse_manifest(source.fetch(METADATA_OBJECT))
    except MissingObject as exc:
        raise MoverError(f"{exc} (the image's {METADATA_OBJECT} is needed)") from None
    report.image, report.layout = manifest.name, layout
    targets = plan_targets(manifest, layout)
    try:
        devmap = source.fetch(DEVMAP_OBJECT)
    except MissingObject as exc:
        raise MoverError(f"{exc} (the image's device map is needed)") from None
    found = {name: fetch_optional(source, name) for name in COPIED_OBJECTS}
    copied = {name: data for name, data in found.items() if data is not None}
    return Inputs(manifest, devmap, copied, targets)


def probe_objects(inputs: Inputs, source: ObjectSource, progress: Progress, report: Report) -> None:
    """Check that every volume object exists before converting any (a 16 TB run must not fail
    hours in for a missing object); all missing ones are named at once."""
    missing = []
    for vol in inputs.manifest.volumes:
        report.volumes.append(VolumeResult(vol.name, vol.file_name, inputs.targets[vol.name]))
        try:
            progress.add_volume(vol.name, source.size(vol.file_name), vol.size)
        except MissingObject as exc:
            missing.append(f"volume {vol.name}: {exc}")
    if missing:
        raise MoverError("; ".join(missing))


def check_space(inputs: Inputs, dirs: dict[str, str]) -> None:
    """Fail before converting when the volumes' sizes (as the manifest gives them) cannot fit."""
    for target, directory in dirs.items():
        sizes = [v.size for v in inputs.manifest.volumes if inputs.targets[v.name] == target]
        if not sizes or None in sizes:
            continue
        stat = os.statvfs(directory)
        free = stat.f_bavail * stat.f_frsize
        need = sum(sizes)  # type: ignore[arg-type]
        if need > free:
            raise MoverError(
                f"the {target} volume has {free:,} bytes free, its volumes need {need:,} "
                f"({', '.join(v.name for v in inputs.manifest.volumes if inputs.targets[v.name] == target)})"
            )


def convert_all(
    inputs: Inputs,
    source: ObjectSource,
    dirs: dict[str, str],
    jobs: int,
    settings: Settings,
    progress: Progress,
    report: Report,
    open_writer: Optional[Callable[[str, str], BlockWriter]] = None,
) -> None:
    """Convert every volume into dirs[target]/VOLSER, or into what open_writer(target, VOLSER) gives;
    the first volume that stays wrong cancels the rest and fails the run with that volume named."""
    cancel = threading.Event()
    vols = sorted(inputs.manifest.volumes, key=lambda v: -(v.size or 0))  # longest first
    cpus = os.cpu_count() or 1
    # volumes not started; volumes and bytes not finished
    waiting, unfinished, left = [len(vols)], [len(vols)], [sum(v.size or 0 for v in vols)]
    lock = threading.Lock()

    def one(index: int) -> None:
        vol = inputs.manifest.volumes[index]
        target = inputs.targets[vol.name]
        dest = os.path.join(dirs[target], vol.name) if open_writer is None else lambda: open_writer(target, vol.name)
        with lock:
            waiting[0] -= 1
            pipelined = pipelines(vol.size or 0, cpus, unfinished[0], waiting[0], left[0])
        try:
            result = convert_volume(vol, target, source, dest, progress, cancel, settings, pipelined)
        finally:
            with lock:
                unfinished[0] -= 1
                left[0] -= vol.size or 0
        report.volumes[index] = result
        if result.state == "failed":
            cancel.set()

    index = {v.name: i for i, v in enumerate(inputs.manifest.volumes)}
    progress.set_phase("converting")
    with phase(report, "convert"), ThreadPoolExecutor(max(1, jobs), thread_name_prefix="volume") as pool:
        for future in [pool.submit(one, index[v.name]) for v in vols]:
            future.result()
    failed = [v for v in report.volumes if v.state == "failed"]
    if failed:
        others = f" ({len(failed) - 1} more volume(s) failed, see the report)" if len(failed) > 1 else ""
        raise MoverError(f"{failed[0].error}{others}")


def pipelines(size: int, cpus: int, unfinished: int, waiting: int, left: int) -> bool:
    """Whether a volume of `size` bytes that starts now converts on threads of its own: `unfinished`
    volumes (this one too) of `left` bytes are not done, `waiting` have not started. Volumes enough
    to keep the CPUs busy convert one stage after the other, on one CPU each; a volume that would
    then end last (the last to start, one too large for its share of what is left) or too few
    volumes to go round take threads."""
    return unfinished < cpus or waiting == 0 or size * cpus >= left


@contextmanager
def phase(report: Report, name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        report.phases[name] = round(time.monotonic() - start, 3)
        log(f"{name} took {report.phases[name]:.2f} s")
