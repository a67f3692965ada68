"""Local target: an object directory -> OUT/<image>-data.img, OUT/<image>.qcow2, OUT/report.json.

No root and no mount: volumes are decompressed as sparse files into a work directory beside the
outputs, then `mke2fs -d` builds the populated ext2 images (copying only the data, never the holes)
and debugfs sets the owners.
"""

import os
import shutil
import tempfile
import traceback
from typing import Optional

from datamover import tools
from datamover.codec import inflate_module
from datamover.convert import Settings
from datamover.engine import convert_all, phase, probe_objects, read_inputs
from datamover.errors import MoverError
from datamover.layout import DATA_LABEL, OWNER, data_volume_bytes, write_aux_files
from datamover.names import check_image_name
from datamover.progress import Progress, Ticker, log
from datamover.report import Report
from datamover.sources import LocalSource

BOOT_DISK_MIN = 10 * 10**9  # the mover VSI's boot volume (DESIGN §10); sparse, so free here


def run_local(
    objects: str,
    out: str,
    jobs: int,
    layout: str,
    retries: int = 2,
    retry_delay: float = 5.0,
    progress_every: float = 5.0,
    image: Optional[str] = None,
) -> int:
    """Exit status: 0, or 1 with a one-line error on stderr; report.json is written either way.
    `image` names the outputs when image-metadata.json does not (the reference builder's files)."""
    report = Report("local")
    report.inflate, zmod = inflate_module()
    report.jobs = jobs
    work: Optional[str] = None
    try:
        os.makedirs(out, exist_ok=True)
        source = LocalSource(objects)
        inputs = read_inputs(source, layout, report)
        image = report.image = image_name(inputs.manifest.name, image)
        data_img = os.path.join(out, f"{image}-data.img")
        qcow2 = os.path.join(out, f"{image}.qcow2")
        for stale in (data_img, qcow2):  # outputs of an earlier run must not pass for this one's
            if os.path.exists(stale):
                os.unlink(stale)
        work = tempfile.mkdtemp(prefix=f".{image}-work-", dir=out)
        dirs = {"data": os.path.join(work, "data"), "boot": os.path.join(work, "boot")}
        for directory in dirs.values():
            os.mkdir(directory)
        progress = Progress()
        probe_objects(inputs, source, progress, report)
        settings = Settings(zmod, retries, retry_delay, sync=False)  # the images are what must last
        with Ticker(progress, progress_every):
            convert_all(inputs, source, dirs, jobs, settings, progress, report)
        created = write_aux_files(dirs["data"], inputs.devmap, inputs.copied)
        sizes = {t: sum(v.bytes for v in report.volumes if v.target == t) for t in dirs}
        with phase(report, "data-image"):
            _build_image(data_img, dirs["data"], DATA_LABEL, data_volume_bytes(sizes["data"]), created)
        with phase(report, "boot-qcow2"):
            boot_img = os.path.join(work, f"{image}-boot.img")
            _build_image(boot_img, dirs["boot"], None, max(BOOT_DISK_MIN, data_volume_bytes(sizes["boot"])), [])
            tools.to_qcow2(boot_img, qcow2)
        report.outputs = {"data-image": data_img, "qcow2": qcow2, "qcow2-bytes": os.path.getsize(qcow2)}
    except (MoverError, OSError) as exc:
        report.error = str(exc)
    except Exception as exc:  # a defect: still write the report, so that nobody waits for it in vain
        traceback.print_exc()
        report.error = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
        _write_report(out, report)
    if report.error:
        log(f"error: {report.error}")
        return 1
    log(f"done: {report.outputs['data-image']}, {report.outputs['qcow2']}")
    return 0


def image_name(in_metadata: Optional[str], given: Optional[str]) -> str:
    """The image's name from image-metadata.json or the command line; they must agree."""
    if given is not None:
        check_image_name(given, "--image")
    if in_metadata and given and in_metadata != given:
        raise MoverError(f"image-metadata.json names image {in_metadata!r}, --image {given!r}")
    name = in_metadata or given
    if not name:
        raise MoverError("image-metadata.json has no image.name (a reference builder's file): give --image NAME")
    return name


def _build_image(image: str, directory: str, label: Optional[str], size: int, extra: list[str]) -> None:
    tools.mkfs(image, f"build {image}", label=label, populate=directory, owner=OWNER, size_bytes=size)
    names = sorted(n for n in os.listdir(directory) if n not in extra)
    tools.set_owner(image, names + extra, OWNER)


def _write_report(out: str, report: Report) -> None:
    try:
        path = os.path.join(out, "report.json")
        with open(path + ".tmp", "wb") as handle:
            handle.write(report.to_bytes())
        os.replace(path + ".tmp", path)
    except OSError as exc:
        log(f"error: cannot write the report into {out}: {exc}")
        if not report.error:
            report.error = f"cannot write report.json: {exc}"
