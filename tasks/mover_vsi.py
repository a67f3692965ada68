"""The mover VSI: its resources, its configuration object, and waiting for its report.

Every resource is created through the ledger (recorded before the call, completed after), so a
failure at any point leaves a complete list for teardown. The mover never gets a key: its
configuration holds presigned URLs only, and the user data one short-lived URL to it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from infra import mover_config
from infra.ibmcloud import BUILD_TAG, IbmCloud, build_tag
from infra.ledger import Ledger
from infra.object_store import ObjectStore
from infra.vpc import Resource, VpcError
from tasks.teardown import key_directory, key_file, tracked
from zimage import objects, resources, sizing
from zimage.build import BuiltImage
from zimage.config import Config

ATTACHMENTS = {"data": "zimage-data", "boot": "zimage-boot", "scratch": "zimage-qcow2"}


class MoverFailed(RuntimeError):
    """The data mover reported a failure, or its VSI died."""


class MoverTimeout(MoverFailed):
    pass


class MoverCancelled(RuntimeError):
    """The flow run was asked to cancel while the mover was converting."""


class MoverResources(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    build_id: str
    vpc: Resource
    subnet: Resource
    security_group: Resource
    key: Resource
    volumes: dict[str, Resource]  # role (data, boot, scratch) -> volume
    instance: Resource
    floating_ip: Resource | None = None
    address: str | None = None
    image: str  # the mover's OS image
    upload_id: str
    user_data_bytes: int
    private_key_file: str | None = None


def volume_sizes(cfg: Config, built: BuiltImage) -> dict[str, int]:
    boot_bytes = sum(v.size for v in built.volumes if v.boot)
    return sizing.mover_volume_gb(cfg.image(built.image).layout, built.size, boot_bytes)


def ssh_key_pair() -> tuple[str, bytes]:
    """A fresh ed25519 key pair: (OpenSSH public key line, OpenSSH private key bytes)."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return public.decode() + " zimage-mover", pem


def keep_private_key(build_id: str, pem: bytes) -> Path:
    """Written 0600 in a 0700 directory under the state directory, for SSH access to the mover
    (debugging only); teardown deletes it unless the run was asked to keep it."""
    directory = key_directory()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)  # mkdir leaves an existing directory's mode as it was
    path = key_file(build_id)
    path.unlink(missing_ok=True)  # O_CREAT keeps the mode of a file that exists
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return path


@task(name="check-mover-image", task_run_name="check-mover-image", cache_policy=NO_CACHE)
def check_mover_image(cloud: IbmCloud, pattern: str) -> Resource:
    """The newest available image matching the config's regex (nothing is created)."""
    image = cloud.vpc.newest_image(pattern)
    get_run_logger().info("mover image: %s (newest matching %r)", image.name, pattern)
    mover_config.check_wheels([Path(w) for w in cloud.target.mover.accelerator_wheels])
    return image


def mover_network(cloud: IbmCloud, ledger: Ledger, ssh_from: str | None) -> tuple[Resource, Resource, Resource]:
    """A mover's VPC and subnet (waited for) and its security group: outbound only, SSH in from
    `ssh_from` when given. Each through the ledger."""
    vpc, timing = cloud.vpc, cloud.timing
    build = ledger.document.build_id
    name = lambda role: resources.name(build, role)  # noqa: E731
    net = tracked(ledger, "vpc", name("vpc"), lambda: vpc.create_vpc(name("vpc")))
    vpc.wait_ready(net, timeout=timing.ready_timeout, poll=timing.poll)
    subnet = tracked(ledger, "subnet", name("subnet"), lambda: vpc.create_subnet(name("subnet"), net.id))
    vpc.wait_ready(subnet, timeout=timing.ready_timeout, poll=timing.poll)
    sg = tracked(
        ledger, "security_group", name("sg"), lambda: vpc.create_security_group(name("sg"), net.id, ssh_from=ssh_from)
    )
    return net, subnet, sg


def mover_instance(
    cloud: IbmCloud, ledger: Ledger, subnet: Resource, sg: Resource, key: Resource, image: Resource, user_data: str,
    data_volumes: dict[str, str],
) -> Resource:
    """The mover instance (profile and root key from the config), through the ledger, waited for
    until it runs; `data_volumes` maps attachment names to volume ids."""
    vpc, timing, target = cloud.vpc, cloud.timing, cloud.target
    name = resources.name(ledger.document.build_id, "mover")
    instance = tracked(
        ledger, "instance", name,
        lambda: vpc.create_instance(
            name, subnet_id=subnet.id, security_group_id=sg.id, image_id=image.id, profile=target.mover.profile,
            user_data=user_data, key_ids=[key.id], data_volumes=data_volumes,
            encryption_key_crn=target.encryption_key_crn,
        ),
    )
    vpc.wait_ready(instance, timeout=timing.ready_timeout, poll=timing.poll)
    return instance


@task(name="provision-mover", task_run_name="provision-mover-{built.image}", cache_policy=NO_CACHE)
def provision_mover(
    cloud: IbmCloud,
    ledger: Ledger,
    store: ObjectStore,
    cfg: Config,
    built: BuiltImage,
    mover_image: Resource,
    lifetime: mover_config.Lifetimes,
    ssh_from: str = "0.0.0.0/0",
    rewrites: list[dict[str, Any]] | None = None,
) -> MoverResources:
    """VPC, subnet, security group, key, volumes, mover configuration, instance (and a floating
    IP when SSH access is asked for), each waited for until usable."""
    log = get_run_logger()
    build = ledger.document.build_id
    target, mover = cfg.target, cfg.target.mover
    vpc, timing = cloud.vpc, cloud.timing
    vpc.tags = [BUILD_TAG, build_tag(build)]
    name = lambda role: resources.name(build, role)  # noqa: E731

    def ready(res: Resource) -> Resource:
        vpc.wait_ready(res, timeout=timing.ready_timeout, poll=timing.poll)
        return res

    net, subnet, sg = mover_network(cloud, ledger, ssh_from if mover.ssh_access else None)
    public_key, private_pem = ssh_key_pair()
    key = tracked(ledger, "key", name("key"), lambda: vpc.create_key(name("key"), public_key))
    key_file = str(keep_private_key(build, private_pem)) if mover.ssh_access else None
    del private_pem  # only the public half leaves this function unless SSH access is asked for

    sizes = volume_sizes(cfg, built)
    roles = {"data": "data", "boot": "boot", "scratch": "qcow2"}  # role -> resource name suffix
    volumes: dict[str, Resource] = {}
    for role, suffix in roles.items():
        volumes[role] = tracked(
            ledger, "volume", name(suffix),
            lambda s=suffix, r=role: vpc.create_volume(
                name(s), sizes[r], mover.volume_profile, encryption_key_crn=target.encryption_key_crn
            ),
        )
    for vol in volumes.values():
        ready(vol)
    log.info(
        "mover volumes: data %d GB, boot %d GB, qcow2 %d GB (%s%s)", sizes["data"], sizes["boot"], sizes["scratch"],
        mover.volume_profile, ", customer root key" if target.encryption_key_crn else "",
    )

    written = mover_config.write(
        store, built, build, layout=cfg.image(built.image).layout, attachments=ATTACHMENTS,
        boot_disk_gb=sizes["boot"], key_layout=target.cos.key_layout, lifetime=lifetime, jobs=mover.jobs,
        wheels=[Path(w) for w in mover.accelerator_wheels], rewrites=rewrites,
    )
    user_data = mover_config.user_data(written.config_url)
    instance = mover_instance(
        cloud, ledger, subnet, sg, key, mover_image, user_data,
        {ATTACHMENTS[role]: vol.id for role, vol in volumes.items()},
    )
    log.info("mover %s running (%s, %s, user data %d bytes)", instance.name, mover.profile, mover_image.name,
             len(user_data.encode()))
    fip, address = None, None
    if mover.ssh_access:
        fip = ready(tracked(ledger, "floating_ip", name("fip"), lambda: vpc.create_floating_ip(name("fip"), instance)))
        address = vpc.get(fip).get("address")
        log.info("SSH access: ssh -i %s root@%s (key kept for this build only)", key_file, address)
    return MoverResources(
        build_id=build, vpc=net, subnet=subnet, security_group=sg, key=key, volumes=volumes, instance=instance,
        floating_ip=fip, address=address, image=mover_image.name, upload_id=written.upload_id,
        user_data_bytes=len(user_data.encode()), private_key_file=key_file,
    )


class _Reading:
    """One JSON object the mover writes, read again and again; an unreadable one is said."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store, self.key = store, key
        self.error: str | None = None

    def read(self) -> dict[str, Any] | None:
        if self.store.head(self.key) is None:
            return None
        raw = self.store.get_bytes(self.key)
        try:
            value = json.loads(raw)
        except ValueError as exc:  # objects are written whole: this one will not mend by itself
            value, why = None, f"not valid JSON ({exc}; {len(raw)} bytes)"
        else:
            why = None if isinstance(value, dict) else f"not a JSON object but {type(value).__name__}"
        if why is not None:
            if why != self.error:
                get_run_logger().warning("%s is %s", self.store.describe(self.key), why)
            self.error = why
            return None
        self.error = None
        return value


def flow_run_cancelling(flow_run_id: str | None) -> bool:
    """Whether someone asked the flow run to cancel (the mover's wait is where a run spends its time)."""
    if not flow_run_id:
        return False
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state  # type: ignore[arg-type]
    except Exception as exc:  # an API hiccup is not a cancellation; the next poll asks again
        get_run_logger().warning("could not read the state of flow run %s: %s", flow_run_id, exc)
        return False
    return bool(state and (state.is_cancelling() or state.is_cancelled()))


def _progress_line(image: str, progress: dict[str, Any]) -> tuple[str, float | None]:
    done, total = progress.get("bytes_done") or 0, progress.get("bytes_total")
    gz_done, gz_total = progress.get("gz_bytes_done") or 0, progress.get("gz_bytes_total") or 0
    pct = 100.0 * gz_done / gz_total if gz_total else None
    eta = progress.get("eta_seconds")
    vols = progress.get("volumes") or {}
    states = [v.get("state") for v in vols.values() if isinstance(v, dict)]
    line = (
        f"mover {image}: {progress.get('phase', '?')}, {sizing.human(done)}"
        + (f" of {sizing.human(total)}" if total else "")
        + (f" ({pct:.1f}%)" if pct is not None else "")
        + f", {progress.get('mb_per_s', 0.0)} MB/s"
        + (f", ETA {eta} s" if eta is not None else "")
        + f"; volumes {states.count('succeeded')}/{len(states)} done"
    )
    return line, pct


def check_mover(cloud: IbmCloud, instance: Resource, flow_run_id: str | None, awaited: str, doing: str) -> None:
    """Between two reads of what a mover writes: its instance must still run and nobody may have
    asked the run to cancel. `awaited` names what it has not yet done, `doing` what it is doing."""
    try:
        status = cloud.vpc.status(instance)
    except VpcError as exc:
        if exc.status == 404:
            raise MoverFailed(f"mover instance {instance.name} disappeared before it {awaited}") from exc
        raise
    if status in ("failed", "stopped", "deleting"):
        raise MoverFailed(f"mover instance {instance.name} is {status} and never {awaited}")
    if flow_run_cancelling(flow_run_id):
        raise MoverCancelled(f"the flow run was cancelled while {doing}")


class MoverStalled(MoverFailed):
    """The mover stopped publishing progress (or never started to)."""


@task(name="wait-for-mover", task_run_name="wait-for-mover-{image}", cache_policy=NO_CACHE)
def wait_for_mover(
    cloud: IbmCloud,
    store: ObjectStore,
    image: str,
    build: str,
    instance: Resource,
    deadline_s: float,
    stale_s: float,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Poll the build's report object until it is there; show its progress meanwhile. A failed
    report, a report of another build, a dead instance, progress that stopped changing for
    `stale_s` (or never came), the deadline or a cancellation ends the wait with an error."""
    log = get_run_logger()
    poll = cloud.timing.report_poll
    artifact = create_progress_artifact(progress=0.0, description=f"Data mover converting {image}")
    started = last_change = time.monotonic()
    last_progress: dict[str, Any] | None = None
    report_reading = _Reading(store, objects.report_key(image, build))
    progress_reading = _Reading(store, objects.progress_key(image, build))
    while True:
        report = report_reading.read()
        if report_reading.error:
            raise MoverFailed(f"the report of the data mover on {instance.name}, "
                              f"{store.describe(report_reading.key)}, is {report_reading.error}")
        if report is not None:
            return _finished(store, image, build, instance, report_reading.key, report, artifact)
        progress = progress_reading.read()
        now = time.monotonic()
        if progress is not None and progress != last_progress:  # the mover rewrites it every few seconds
            last_progress, last_change = progress, now
            if progress.get("build") not in (None, build):
                raise MoverFailed(f"{store.describe(progress_reading.key)} names build {progress.get('build')!r}, "
                                  f"not {build}: it was written by another build's mover")
            line, pct = _progress_line(image, progress)
            log.info("%s", line)
            if pct is not None:
                update_progress_artifact(artifact, progress=min(99.0, pct))
        check_mover(cloud, instance, flow_run_id, "reported", f"the mover converted {image}")
        if now - last_change >= stale_s:
            raise MoverStalled(_stalled(store, instance, progress_reading, last_progress, now - last_change))
        elapsed = now - started
        if elapsed >= deadline_s:
            raise MoverTimeout(
                f"the data mover did not report within {deadline_s / 3600:.2f} h (target.mover.deadline_hours); "
                f"last progress: {_progress_line(image, last_progress)[0] if last_progress else 'none'}"
            )
        time.sleep(min(poll, max(0.0, deadline_s - elapsed)))


def _stalled(
    store: ObjectStore, instance: Resource, reading: _Reading, last: dict[str, Any] | None, seconds: float
) -> str:
    where = store.describe(reading.key)
    if reading.error:
        return f"the progress of the mover on {instance.name}, {where}, has been {reading.error} for {seconds:.0f} s"
    if last is None:
        return (f"the data mover on {instance.name} has written no progress ({where}) in {seconds:.0f} s: "
                "it did not start, or died before its first report")
    return (f"the data mover on {instance.name} has not updated its progress ({where}) for {seconds:.0f} s "
            f"(last phase: {last.get('phase', '?')}): it has stopped or hangs")


def _finished(
    store: ObjectStore, image: str, build: str, instance: Resource, key: str, report: dict[str, Any], artifact: Any
) -> dict[str, Any]:
    if report.get("build") != build:
        raise MoverFailed(f"{store.describe(key)} names build {report.get('build')!r}, not {build}: "
                          "it is not this build's report")
    update_progress_artifact(artifact, progress=100.0)
    if report.get("status") != "succeeded":
        failed = report.get("volumes-failed") or []
        raise MoverFailed(
            f"the data mover on {instance.name} failed: {report.get('error') or 'no error given'}"
            + (f" (failed volumes: {', '.join(failed)})" if failed else "")
            + f"; its report is {store.describe(key)}"
        )
    totals = report.get("totals") or {}
    get_run_logger().info("mover %s finished: %s in %.0f s (%s MB/s)", image, sizing.human(totals.get("bytes") or 0),
                          report.get("seconds") or 0, totals.get("mb-per-s"))
    return report
