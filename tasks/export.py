"""Tasks of export-instance: look-ups, the snapshot, the export mover, the plan and the landing.

Every cloud resource goes through the build's ledger (recorded before the call, completed after),
so the flow's teardown, its hooks and `reap-orphans` find it whatever happens. The mover gets
presigned URLs only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from infra import export_objects, mover_config
from infra.ibmcloud import BUILD_TAG, IbmCloud, build_tag
from infra.instance_power import find_instance
from infra.ledger import Ledger
from infra.object_store import ObjectStore
from infra.staging_store import StagingStore, prune
from infra.vpc import Resource
from tasks.mover_vsi import MoverFailed, MoverTimeout, check_mover, mover_instance, mover_network, ssh_key_pair
from tasks.teardown import tracked
from zimage import export, resources, sizing
from zimage.config import Component, Config, Instance
from zimage.export import Inventory
from zimage.manifests import StagedVolume


class ExportRefused(RuntimeError):
    """Something a run can see before it creates anything is wrong: nothing was created."""

    retryable = False


@dataclass(frozen=True)
class DataVolume:
    id: str
    name: str
    attachment: str
    capacity_gb: int
    profile: str


class ExportMover(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    instance: Resource
    volume: Resource
    user_data_bytes: int
    expires_s: int


def data_volume(cloud: IbmCloud, raw: dict[str, Any], spec: Instance) -> DataVolume:
    """The server's volume holding its z/OS volumes: `data_volume` from the config (attachment or
    volume name), else its only data volume."""
    boot = (raw.get("boot_volume_attachment") or {}).get("id")
    attached = [a for a in raw.get("volume_attachments") or [] if a.get("id") != boot]
    if spec.data_volume:
        chosen = [a for a in attached if spec.data_volume in (a.get("name"), a["volume"].get("name"))]
    else:
        chosen = attached
    if len(chosen) != 1:
        names = ", ".join(f"{a.get('name')} (volume {a['volume'].get('name')})" for a in attached) or "none"
        wanted = f"named {spec.data_volume!r}" if spec.data_volume else "exactly one"
        raise ExportRefused(
            f"instance {spec.name} has no data volume {wanted}: its data volumes are {names}; "
            "set instances[].data_volume"
        )
    att = chosen[0]
    vol = cloud.vpc.get(Resource(kind="volumes", id=att["volume"]["id"], name=att["volume"].get("name", "")))
    return DataVolume(
        vol["id"],
        vol["name"],
        att.get("name", ""),
        int(vol["capacity"]),
        (vol.get("profile") or {}).get("name", "general-purpose"),
    )


@task(name="look-up-export", task_run_name="look-up-export-{spec.name}", cache_policy=NO_CACHE)
def look_up_export(cloud: IbmCloud, spec: Instance, stop: bool) -> tuple[dict[str, Any], DataVolume]:
    """The server and its data volume; a running server is refused unless it is to be stopped."""
    raw = find_instance(cloud.vpc, spec.name)
    status = raw.get("status")
    if status == "running" and not stop:
        raise ExportRefused(
            f"instance {spec.name} is running: z/OS may be writing to its volumes, so they cannot be copied "
            f"consistently. Stop it first (zimage run stop-instance --instance {spec.name}) or pass --stop; "
            "nothing was created"
        )
    if status not in ("running", "stopped"):
        raise ExportRefused(f"instance {spec.name} is {status}: wait until it is stopped; nothing was created")
    return raw, data_volume(cloud, raw, spec)


def snapshot_name(instance: str, build: str, generation: str, keep: bool) -> str:
    """A kept snapshot is the user's and named after the server; a temporary one is the build's."""
    if keep:
        return f"{instance[:35]}-export-{generation.replace('_', '-')}".replace("--", "-")
    return resources.name(build, "snap")


@task(name="snapshot-data-volume", task_run_name="snapshot-{volume.name}", cache_policy=NO_CACHE)
def snapshot_data_volume(cloud: IbmCloud, ledger: Ledger, volume: DataVolume, name: str, keep: bool) -> Resource:
    vpc, timing = cloud.vpc, cloud.timing
    vpc.tags = [BUILD_TAG, build_tag(ledger.document.build_id)]
    started = time.monotonic()
    snap = tracked(ledger, "snapshot", name, lambda: vpc.create_snapshot(volume.id, name))
    vpc.wait_ready(snap, timeout=timing.snapshot_timeout, poll=timing.poll)
    if keep:
        ledger.kept(next(e for e in ledger.document.entries if e.kind == "snapshot" and e.name == name))
    get_run_logger().info(
        "snapshot %s of %s (%d GB) is stable after %.0f s%s",
        name,
        volume.name,
        volume.capacity_gb,
        time.monotonic() - started,
        " (kept)" if keep else "",
    )
    return snap


@task(name="provision-export-mover", task_run_name="provision-export-mover-{instance}", cache_policy=NO_CACHE)
def provision_export_mover(
    cloud: IbmCloud,
    ledger: Ledger,
    store: ObjectStore,
    cfg: Config,
    instance: str,
    snapshot: Resource,
    volume: DataVolume,
    mover_image: Resource,
    lifetime: mover_config.Lifetimes,
) -> ExportMover:
    """Network, key, the volume made from the snapshot, the export configuration and the mover
    instance, each waited for until usable. No inbound access: the mover only calls out."""
    log = get_run_logger()
    build = ledger.document.build_id
    target, mover = cfg.cloud, cfg.cloud.mover
    vpc, timing = cloud.vpc, cloud.timing
    vpc.tags = [BUILD_TAG, build_tag(build)]

    def name(role: str) -> str:
        return resources.name(build, role)

    def ready(res: Resource) -> Resource:
        vpc.wait_ready(res, timeout=timing.ready_timeout, poll=timing.poll)
        return res

    _, subnet, sg = mover_network(cloud, ledger, None)  # no inbound access: nobody logs in to an export mover
    public_key, _ = ssh_key_pair()  # the private half is never kept: nobody logs in to an export mover
    key = tracked(ledger, "key", name("key"), lambda: vpc.create_key(name("key"), public_key))
    restored = ready(
        tracked(
            ledger,
            "volume",
            name("export"),
            lambda: vpc.create_volume_from_snapshot(
                name("export"), snapshot.id, volume.capacity_gb, mover.volume_profile, target.encryption_key_crn
            ),
        )
    )
    written = export_objects.write_config(
        store,
        instance,
        build,
        lifetime,
        jobs=mover.jobs,
        plan_poll=min(5.0, timing.report_poll),
        wheels=[Path(w) for w in mover.accelerator_wheels],
    )
    user_data = export_objects.user_data(written.config_url)
    inst = mover_instance(cloud, ledger, subnet, sg, key, mover_image, user_data, {export.ATTACHMENT: restored.id})
    log.info(
        "export mover %s running (%s, %s), volume %s from snapshot %s attached; user data %d bytes",
        inst.name,
        mover.profile,
        mover_image.name,
        restored.name,
        snapshot.name,
        len(user_data.encode()),
    )
    return ExportMover(
        instance=inst, volume=restored, user_data_bytes=len(user_data.encode()), expires_s=written.expires_s
    )


@task(name="wait-for-inventory", task_run_name="wait-for-inventory-{instance}", cache_policy=NO_CACHE)
def wait_for_inventory(
    cloud: IbmCloud,
    store: ObjectStore,
    instance: str,
    build: str,
    mover: Resource,
    deadline_s: float,
    flow_run_id: str | None,
) -> Inventory:
    """The volumes the mover found on the data volume (it reads only the devmap and each volume's head)."""
    key = export.key(instance, build, "inventory.json")
    report_key = export.key(instance, build, "report.json")
    started = time.monotonic()
    while True:
        found = export_objects.read_json(store, key)
        if found is not None:
            inventory = Inventory.model_validate(found)
            get_run_logger().info(
                "the data volume of %s holds %d volume(s), %s: %s",
                instance,
                len(inventory.volumes),
                sizing.human(inventory.bytes),
                ", ".join(f"{v.volser}@{v.devnum}" for v in inventory.volumes),
            )
            return inventory
        report = export_objects.read_json(store, report_key)
        if report is not None:  # it failed before it could say what it found
            raise MoverFailed(f"the export mover on {mover.name} failed: {report.get('error') or 'no error given'}")
        check_mover(cloud, mover, flow_run_id, "sent its inventory", f"the export mover of {instance} started")
        if time.monotonic() - started >= deadline_s:
            raise MoverTimeout(f"the export mover on {mover.name} sent no inventory within {deadline_s:.0f} s")
        time.sleep(cloud.timing.report_poll)


@task(name="plan-export", task_run_name="plan-export-{instance}", cache_policy=NO_CACHE)
def plan_export(
    store: ObjectStore, instance: str, build: str, inventory: Inventory, component: Component | None, expires_s: int
) -> dict[str, str]:
    """Check the inventory against the configured component, then give the mover its upload URLs."""
    if component is not None:
        export.check_inventory(inventory, component)
    return export_objects.write_plan(store, instance, build, inventory, expires_s)


@task(name="land-export", task_run_name="land-export-{component}-{generation}", cache_policy=NO_CACHE)
def land_export(
    store: ObjectStore,
    staging_store: StagingStore,
    directory: str,
    instance: str,
    build: str,
    component: str,
    config_component: Component | None,
    system: str,
    kind: str,
    generation: str,
    inventory: Inventory,
    report: dict[str, Any],
) -> dict[str, Any]:
    """Every exported volume onto the storage server, verified; then the generation's manifest."""
    log = get_run_logger()
    reported = {v["volser"]: v for v in report.get("volumes") or []}
    missing = [v.volser for v in inventory.volumes if v.volser not in reported]
    if missing:
        raise MoverFailed(f"the export report has no result for {', '.join(missing)}")
    devtypes = {v.volser: v.devtype for v in config_component.volumes} if config_component else {}
    total = sum(reported[v.volser]["gz_bytes"] for v in inventory.volumes)
    artifact = create_progress_artifact(progress=0.0, description=f"Landing the export of {instance} on storage")
    done_before = 0
    started = time.monotonic()
    staged: list[StagedVolume] = []
    for vol in inventory.volumes:
        devtype = devtypes.get(vol.volser) or export.model_of(vol)[0]

        def progress(done: int, before: int = done_before) -> None:
            update_progress_artifact(artifact, progress=min(99.0, 100.0 * (before + done) / max(total, 1)))

        staged.append(
            export_objects.land_volume(
                store,
                staging_store,
                instance,
                build,
                directory,
                generation,
                devtype,
                reported[vol.volser],
                progress,
            )
        )
        done_before += reported[vol.volser]["gz_bytes"]
    path = export_objects.write_generation(staging_store, directory, component, system, kind, generation, staged)
    update_progress_artifact(artifact, progress=100.0)
    seconds = time.monotonic() - started
    log.info(
        "generation %s of %s on %s: %d volume(s), %s (%s gzip) in %.1f s, %s/s",
        generation,
        component,
        staging_store.where(),
        len(staged),
        sizing.human(sum(v.bytes for v in staged)),
        sizing.human(total),
        seconds,
        sizing.human(total / max(seconds, 1e-6)),
    )
    removed = prune(staging_store, directory, config_component, generation) if config_component else []
    return {
        "manifest": path,
        "volumes": [v.model_dump(mode="json") for v in staged],
        "pruned": removed,
        "seconds": round(seconds, 1),
    }
