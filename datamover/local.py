"""Local target: an object directory -> OUT/<image>-data.img, OUT/<image>.qcow2, OUT/report.json.

No root and no mount. When image-metadata.json gives every volume's size, the ext2 images are laid
out first (datamover.ext2) and each volume is decompressed straight into its place: every byte is
written once. Otherwise the volumes are decompressed as sparse files into a work directory beside
the outputs, then `mke2fs -d` builds the populated images (a second copy) and debugfs sets owners.
"""

import os
import shutil
import tempfile
import traceback
from typing import Optional

from datamover import tools
from datamover.codec import inflate_module
from datamover.convert import Settings
from datamover.engine import Inputs, convert_all, phase, probe_objects, read_inputs
from datamover.errors import MoverError
from datamover.ext2 import Ext2Image
from datamover.layout import DATA_LABEL, OWNER, data_volume_bytes, write_aux_files
from datamover.names import check_image_name
from datamover.progress import Progress, Ticker, log
from datamover.report import Report
from datamover.sources import LocalSource

BOOT_DISK_MIN = 10 * 10**9  # the mover VSI's boot volume (DESIGN §10); sparse, so free here
TARGETS = ("data", "boot")


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
    data_img: Optional[str] = None
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
        boot_img = os.path.join(work, f"{image}-boot.img")
        progress = Progress()
        probe_objects(inputs, source, progress, report)
        settings = Settings(zmod, retries, retry_delay, sync=False)  # the images are what must last
        unsized = [v.name for v in inputs.manifest.volumes if v.size is None]
        with Ticker(progress, progress_every):
            if unsized:
                log(f"image-metadata.json gives no size for {', '.join(unsized)}: converting through a work directory")
                _through_directories(inputs, source, work, (data_img, boot_img), jobs, settings, progress, report)
            else:
                _into_images(inputs, source, work, (data_img, boot_img), jobs, settings, progress, report)
        with phase(report, "boot-qcow2"):
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
        if report.error and data_img and os.path.exists(data_img):  # a half-written image is no output
            os.unlink(data_img)
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


def _into_images(
    inputs: Inputs,
    source: LocalSource,
    work: str,
    images: tuple[str, str],
    jobs: int,
    settings: Settings,
    progress: Progress,
    report: Report,
) -> None:
    """Lay out the data and boot images from the manifest's sizes, then decompress into them."""
    aux = os.path.join(work, "aux")
    os.mkdir(aux)
    created = write_aux_files(aux, inputs.devmap, inputs.copied)
    files = [(name, _read(os.path.join(aux, name))) for name in created]
    vols = {t: [(v.name, v.size or 0) for v in inputs.manifest.volumes if inputs.targets[v.name] == t] for t in TARGETS}
    room = _image_bytes({t: sum(size for _, size in vols[t]) for t in TARGETS})
    planned = {
        "data": Ext2Image(images[0], room["data"], DATA_LABEL, OWNER, vols["data"], files),
        "boot": Ext2Image(images[1], room["boot"], None, OWNER, vols["boot"]),
    }
    try:
        convert_all(inputs, source, {}, jobs, settings, progress, report, lambda t, name: planned[t].open_volume(name))
        with phase(report, "data-image"):
            for ext2 in planned.values():
                ext2.finish()
    finally:
        for ext2 in planned.values():
            ext2.close()


def _through_directories(
    inputs: Inputs,
    source: LocalSource,
    work: str,
    images: tuple[str, str],
    jobs: int,
    settings: Settings,
    progress: Progress,
    report: Report,
) -> None:
    """Decompress into sparse files of a work directory, then let mke2fs -d copy them into the images."""
    dirs = {t: os.path.join(work, t) for t in TARGETS}
    for directory in dirs.values():
        os.mkdir(directory)
    convert_all(inputs, source, dirs, jobs, settings, progress, report)
    created = write_aux_files(dirs["data"], inputs.devmap, inputs.copied)
    room = _image_bytes({t: sum(v.bytes for v in report.volumes if v.target == t) for t in TARGETS})
    with phase(report, "data-image"):
        _build_image(images[0], dirs["data"], DATA_LABEL, room["data"], created)
        _build_image(images[1], dirs["boot"], None, room["boot"], [])


def _image_bytes(volume_bytes: dict[str, int]) -> dict[str, int]:
    """Sizes of the data and boot images for the bytes of their volumes."""
    return {
        "data": data_volume_bytes(volume_bytes["data"]),
        "boot": max(BOOT_DISK_MIN, data_volume_bytes(volume_bytes["boot"])),
    }


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


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
