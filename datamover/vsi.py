"""VSI target: the mover VSI formats and mounts its attached volumes, converts into them, turns the
boot disk into a qcow2 on the scratch volume, uploads it, and uploads the report last."""

import json
import os
import traceback
from typing import Any, Optional

from datamover import http as web
from datamover import tools
from datamover.accel import load_wheels
from datamover.codec import inflate_module
from datamover.convert import Settings
from datamover.engine import Inputs, check_space, convert_all, default_jobs, phase, probe_objects, read_inputs
from datamover.errors import MoverError
from datamover.layout import DATA_LABEL, OWNER, write_aux_files
from datamover.metadata import attachment_devices
from datamover.moverconfig import MoverConfig, parse_config
from datamover.progress import Progress, Ticker, log
from datamover.report import Report
from datamover.rewrite import MemberJob, apply_jobs, member_jobs
from datamover.s3 import S3Client
from datamover.sources import ObjectSource, S3Source, UrlSource
from datamover.upload import Uploader

ROLES = ("data", "boot", "scratch")


def load_config(url: Optional[str], path: Optional[str]) -> MoverConfig:
    if path:
        with open(path, "rb") as handle:
            return parse_config(handle.read())
    _, raw = web.call("GET", url or "", "mover configuration")
    return parse_config(raw)


class _Mounts:
    """The volumes mounted so far, unmounted in reverse order whatever happens."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.points: dict[str, str] = {}

    def mount(self, role: str, device: str) -> str:
        point = os.path.join(self.workdir, role)
        tools.mount(device, point)
        self.points[role] = point
        return point

    def umount(self, role: str) -> None:
        os.sync()
        tools.umount(self.points.pop(role))

    def umount_all(self) -> Optional[str]:
        """Unmount what is left; the first error, if any."""
        error = None
        for role in reversed(list(self.points)):
            try:
                self.umount(role)
            except MoverError as exc:
                log(f"error: {exc}")
                error = error or str(exc)
        return error


def run_vsi(
    config_url: Optional[str],
    config_path: Optional[str],
    workdir: str,
    jobs: Optional[int],
    retries: Optional[int],
    retry_delay: Optional[float],
    progress_every: float,
) -> int:
    """Exit status 0, 1 when the conversion failed, 2 when not even the report could be uploaded."""
    report = Report("vsi")
    config: Optional[MoverConfig] = None
    uploader: Optional[Uploader] = None
    progress = Progress()
    mounts = _Mounts(workdir)
    try:
        config = load_config(config_url, config_path)
        report.build = config.build
        rewrites = member_jobs(config.rewrites, "mover configuration: rewrites")
        report.outputs["accelerators"] = load_wheels(config.accelerators, workdir)
        report.inflate, zmod = inflate_module()
        s3 = S3Client(config.s3) if config.s3 else None
        uploader = Uploader(s3)
        source: ObjectSource = (
            UrlSource(config.objects) if isinstance(config.objects, dict) else S3Source(s3, config.objects)  # type: ignore[arg-type]
        )
        report.jobs = jobs or config.jobs or default_jobs()
        settings = Settings(
            zmod,
            config.retries if retries is None else retries,
            config.retry_delay if retry_delay is None else retry_delay,
            sync=True,
        )
        publish = _publisher(uploader, config, "running")
        with Ticker(progress, progress_every, publish, config.progress_every):
            _convert(config, rewrites, source, uploader, settings, progress, mounts, report)
    except (MoverError, OSError) as exc:
        report.error = str(exc)
    except Exception as exc:  # a defect: still write the report, so that nobody waits for it in vain
        traceback.print_exc()
        report.error = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        umount_error = mounts.umount_all()
        report.error = report.error or umount_error
    return _finish(report, config, uploader, progress, workdir)


def _convert(
    config: MoverConfig,
    rewrites: list[MemberJob],
    source: ObjectSource,
    uploader: Uploader,
    settings: Settings,
    progress: Progress,
    mounts: _Mounts,
    report: Report,
) -> None:
    progress.set_phase("reading inputs")
    inputs = read_inputs(source, config.layout, report)
    if inputs.manifest.name is not None and inputs.manifest.name != config.image:
        raise MoverError(
            f"image-metadata.json names image {inputs.manifest.name!r}, the mover configuration {config.image!r}"
        )
    report.image = config.image  # image-metadata.json of the reference builder names none
    held = {v.name for v in inputs.manifest.volumes}
    unknown = sorted(j.label for j in rewrites if j.volser not in held)
    if unknown:
        raise MoverError(f"mover configuration: rewrites of volumes the image does not hold: {', '.join(unknown)}")
    devices = attachment_devices(config.attachments)
    probe_objects(inputs, source, progress, report)
    progress.set_phase("formatting")
    with phase(report, "format"):
        tools.mkfs(devices["data"], "format the data volume", label=DATA_LABEL, owner=OWNER)
        tools.mkfs(devices["boot"], "format the boot volume", owner=OWNER)
        tools.mkfs(devices["scratch"], "format the qcow2 scratch volume", fs_type="ext4")
    dirs = {role: mounts.mount(role, devices[role]) for role in ROLES}
    check_space(inputs, {"data": dirs["data"], "boot": dirs["boot"]})
    convert_all(inputs, source, dirs, report.jobs or 1, settings, progress, report)
    if rewrites:
        progress.set_phase("network symbols")
        with phase(report, "rewrite"):
            for result in report.volumes:
                path = os.path.join(dirs[result.target], result.name)
                result.deployed_sha256 = apply_jobs(path, result.name, rewrites)
    _finish_files(inputs, dirs)
    progress.set_phase("qcow2")
    mounts.umount("boot")
    qcow2 = os.path.join(dirs["scratch"], f"{config.image}.qcow2")
    with phase(report, "qcow2"):
        tools.to_qcow2(devices["boot"], qcow2)
    progress.set_phase("uploading")
    with phase(report, "upload"):
        info = uploader.upload_file(qcow2, config.qcow2, f"{config.image}.qcow2")
    report.outputs.update({"qcow2": f"{config.image}.qcow2", "qcow2-upload": info, "devices": devices})
    mounts.umount("data")  # the orchestrator snapshots the data volume once the report is there


def _finish_files(inputs: Inputs, dirs: dict[str, str]) -> None:
    created = write_aux_files(dirs["data"], inputs.devmap, inputs.copied)
    paths = [os.path.join(dirs["data"], p) for p in created]
    paths += [os.path.join(dirs[inputs.targets[v.name]], v.name) for v in inputs.manifest.volumes]
    for path in [dirs["data"], dirs["boot"], *paths]:
        os.chown(path, *OWNER)


def _publisher(uploader: Uploader, config: MoverConfig, status: str) -> Any:
    def publish(snapshot: dict[str, Any]) -> None:
        body = json.dumps({"status": status, "build": config.build, **snapshot}).encode()
        uploader.put_bytes(config.progress, body, "application/json", "progress.json")

    return publish


def _finish(
    report: Report, config: Optional[MoverConfig], uploader: Optional[Uploader], progress: Progress, workdir: str
) -> int:
    body = report.to_bytes()
    try:  # a copy on the VSI's disk, for whoever looks at the instance
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "report.json"), "wb") as handle:
            handle.write(body)
    except OSError as exc:
        log(f"warning: cannot keep a local copy of the report: {exc}")
    status = "failed" if report.error else "succeeded"
    if report.error:
        log(f"error: {report.error}")
    if config is None or uploader is None:
        log("error: no mover configuration, so the report cannot be uploaded")
        return 2
    try:
        _publisher(uploader, config, status)(progress.snapshot())
    except MoverError as exc:
        log(f"warning: final progress upload failed: {exc}")
    try:
        uploader.put_bytes(config.report, body, "application/json", "report.json")
    except MoverError as exc:
        log(f"error: report upload failed: {exc}")
        return 2
    log(f"report uploaded: {status}")
    return 1 if report.error else 0
