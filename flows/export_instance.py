"""Flow export-instance: copy the z/OS volumes of a stopped Wazi aaS server out as a new generation.

Every Wazi aaS server is terminated on 2027-02-20; what a team changed on it lives only on its data
volume. The export: refuse a running server (unless `stop`, which runs stop-instance's graceful
stop first) → snapshot the data volume → a volume made from it, attached to a temporary x86 mover
VSI (network, key and instance as a deploy's, through the same ledger) → the data mover reads the
devmap and every volume file, checks VOL1, gzips and hashes each and uploads it through presigned
URLs → the orchestrator lands the objects on the storage server, verified, and writes the
generation's manifest: `build-image`, `deploy-image` and `deploy-host` use it like any extraction.
A component the config does not name yet is printed as YAML to add. Teardown runs in a `finally`
and again from the failure, cancellation and crash hooks; the snapshot goes too unless kept.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Cancelled

from flows.stop_instance import stop_gracefully
from infra import mover_config
from infra.configfile import load_config
from infra.cos import open_object_store
from infra.ibmcloud import IbmCloud, Timing, connect, resolve_api_key
from infra.object_store import ObjectStore
from infra.staging_store import StagingStore, find_manifest, open_store
from infra.vpc import Resource
from tasks.export import (
    DataVolume,
    ExportRefused,
    land_export,
    look_up_export,
    plan_export,
    provision_export_mover,
    snapshot_data_volume,
    snapshot_name,
    wait_for_inventory,
)
from tasks.mover_vsi import MoverCancelled, check_mover_image, wait_for_mover
from tasks.teardown import (
    TeardownResult,
    check_image_free,
    open_ledger,
    teardown_flow_run,
    teardown_once,
)
from zimage import export, names, resources, staging
from zimage.config import Component, Config

log = logging.getLogger(__name__)

_DEFAULTS = {
    "poll_seconds": 10.0,
    "report_poll_seconds": 30.0,
    "resource_timeout_minutes": 15.0,
    "snapshot_timeout_minutes": 120.0,
    "retry_base_seconds": 1.0,
}


def _timing(
    poll_seconds: float,
    report_poll_seconds: float,
    resource_timeout_minutes: float,
    snapshot_timeout_minutes: float,
    retry_base_seconds: float,
) -> Timing:
    return Timing.of(
        poll_seconds,
        resource_timeout_minutes,
        retry_base_seconds,
        report_poll_seconds=report_poll_seconds,
        snapshot_timeout_minutes=snapshot_timeout_minutes,
    )


def _teardown_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """From the ledger alone, so that it works in another process than the flow's."""
    logger = logging.getLogger("zimage.export")
    params = {**_DEFAULTS, **(flow_run.parameters or {})}
    try:
        cfg = load_config(params["config"])
        timing = _timing(*(params[k] for k in _DEFAULTS))
        store = open_object_store(cfg.cloud.cos)
        results = teardown_flow_run(  # the export's objects in the bucket go too
            lambda: connect(cfg.cloud, resolve_api_key(cfg.cloud), timing=timing), store, str(flow_run.id)
        )
    except Exception:
        logger.exception("teardown after %s of flow run %s could not run; run reap-orphans", state.name, flow_run.id)
        raise
    for result in results:
        for failure in result.failures:
            logger.error("teardown after %s: %s", state.name, failure)


@flow(
    name="export-instance",
    flow_run_name="export-{instance}",
    on_failure=[_teardown_hook],
    on_cancellation=[_teardown_hook],
    on_crashed=[_teardown_hook],
)
def export_instance(
    config: str,
    instance: str,
    component: str,
    stop: bool = False,
    keep_snapshot: bool = False,
    system: str | None = None,
    component_type: str = "sysres",
    poll_seconds: float = 10.0,
    report_poll_seconds: float = 30.0,
    answer_poll_seconds: float = 10.0,
    resource_timeout_minutes: float = 15.0,
    snapshot_timeout_minutes: float = 120.0,
    deadline_minutes: float | None = None,
    stale_minutes: float = 30.0,
    retry_base_seconds: float = 1.0,
) -> Any:
    """Export the volumes of the Wazi aaS server INSTANCE as a new generation of COMPONENT.

    Args:
        config: path of the zimage YAML config (`instances[]` names the server).
        instance: name of the server in `instances[]`.
        component: the component the generation belongs to; one the config lacks is printed as YAML to add.
        stop: stop a running server first, gracefully (as stop-instance); without it a running server is refused.
        keep_snapshot: keep the snapshot of the data volume (named <instance>-export-<generation>).
        system: system name of the staging directory when the component is not in the config
            (default: instances[].system).
        component_type: sysres or volumes, for a component not in the config.
        poll_seconds: interval between status reads of cloud resources.
        report_poll_seconds: interval between reads of the mover's inventory, progress and report.
        answer_poll_seconds: with stop, interval between checks whether z/OS still answers.
        resource_timeout_minutes: longest wait for one resource to become ready or to be deleted.
        snapshot_timeout_minutes: longest wait for the snapshot of the data volume.
        deadline_minutes: longest the mover may take; default target.mover.deadline_hours.
        stale_minutes: the run fails when the mover's progress has not changed for this long.
        retry_base_seconds: first back-off of a retried API call (429, 5xx).
    """
    logger = get_run_logger()
    started = time.monotonic()
    cfg = load_config(config)
    spec = cfg.instance(instance)
    names.vpc_name(component)
    known = {c.name: c for c in cfg.components}.get(component)
    system = known.source if known else (system or spec.system)
    if not system:
        raise ExportRefused(
            f"component {component!r} is not in the config: give --system SYSNAME (or instances[].system) to name "
            "its staging directory; the YAML to add to components: is printed when the export is done"
        )
    names.sysname(system)
    kind = known.type if known else component_type
    if kind not in ("sysres", "volumes"):
        raise ExportRefused(f"component_type {component_type!r}: expected sysres or volumes")
    target = cfg.cloud
    timing = _timing(
        poll_seconds, report_poll_seconds, resource_timeout_minutes, snapshot_timeout_minutes, retry_base_seconds
    )
    deadline_s = (deadline_minutes * 60) if deadline_minutes is not None else target.mover.deadline_hours * 3600
    lifetime = mover_config.lifetimes(deadline_s, 2 * timing.ready_timeout + timing.snapshot_timeout)
    generation = staging.generation_of(datetime.now(UTC))
    directory = staging.volume_dir(cfg.storage.root, system)
    # every check that needs no resource first: a refusal here creates nothing
    cloud = connect(target, resolve_api_key(target), timing=timing)
    raw, volume = look_up_export(cloud, spec, stop)
    mover_image = check_mover_image(cloud, target.mover.image)
    store = open_object_store(target.cos)
    with open_store(cfg.storage) as staging_store:
        staging_store.check_writable(directory)
        if find_manifest(staging_store, directory, component, generation):
            raise ExportRefused(f"generation {generation} of {component} exists already; run again in a second")
        if raw.get("status") == "running":
            stop_gracefully(cfg, cloud, instance, False, answer_poll_seconds)
        return _export(
            cfg,
            cloud,
            store,
            staging_store,
            spec.name,
            component,
            known,
            system,
            kind,
            generation,
            directory,
            volume,
            mover_image,
            lifetime,
            deadline_s,
            stale_minutes * 60,
            keep_snapshot,
            started,
            logger,
        )


def _export(
    cfg: Config,
    cloud: IbmCloud,
    store: ObjectStore,
    staging_store: StagingStore,
    instance: str,
    component: str,
    known: Component | None,
    system: str,
    kind: str,
    generation: str,
    directory: str,
    volume: DataVolume,
    mover_image: Resource,
    lifetime: mover_config.Lifetimes,
    deadline_s: float,
    stale_s: float,
    keep_snapshot: bool,
    started: float,
    logger: Any,
) -> Any:
    build = resources.new_build_id()
    flow_run_id = current_flow_run.id
    ledger = open_ledger(store, build, instance, flow_run_id)
    logger.info("export %s of %s: resources are named %s*", build, instance, resources.name(build, ""))
    outcome, report, landed, inventory, snap = "failed", {}, {}, None, None
    torn = TeardownResult()
    try:
        check_image_free(store, ledger)  # two exports of one server never run at once
        snap = snapshot_data_volume(
            cloud, ledger, volume, snapshot_name(instance, build, generation, keep_snapshot), keep_snapshot
        )
        mover = provision_export_mover(cloud, ledger, store, cfg, instance, snap, volume, mover_image, lifetime)
        inventory = wait_for_inventory(cloud, store, instance, build, mover.instance, deadline_s, flow_run_id)
        plan_export(store, instance, build, inventory, known, mover.expires_s)
        report = wait_for_mover(cloud, store, instance, build, mover.instance, deadline_s, stale_s, flow_run_id)
        # the VSI is done: it costs nothing more while we land (the bucket's objects stay until then)
        torn = teardown_once(cloud, ledger, None)
        landed = land_export(
            store,
            staging_store,
            directory,
            instance,
            build,
            component,
            known,
            system,
            kind,
            generation,
            inventory,
            report,
        )
        outcome = "succeeded"
    except MoverCancelled as exc:
        outcome = "cancelled"
        logger.warning("%s: tearing down", exc)
    finally:
        again = teardown_once(cloud, ledger, store)
        torn.deleted += again.deleted
        torn.gone += again.gone
        torn.failures = again.failures
        if not torn.failures:
            torn.attempt(f"ledger of export {build}", lambda: ledger.finish(ok=outcome == "succeeded"))
    if torn.failures:
        raise RuntimeError(
            f"export {build}: teardown failed {len(torn.failures)} time(s); run reap-orphans. "
            + "; ".join(torn.failures)
        )
    if outcome == "cancelled":
        return Cancelled(message=f"export of {instance} cancelled; export {build} torn down")
    assert inventory is not None and snap is not None
    yaml_text = None if known else export.component_yaml(component, system, kind, inventory)
    if yaml_text:
        logger.warning("component %s is not in the config; add it under components:\n%s", component, yaml_text)
    summary = {
        "instance": instance,
        "build_id": build,
        "component": component,
        "system": system,
        "generation": generation,
        "manifest": landed["manifest"],
        "volumes": landed["volumes"],
        "bytes": sum(v["bytes"] for v in landed["volumes"]),
        "gz_bytes": sum(v["gz_bytes"] for v in landed["volumes"]),
        "snapshot": {"name": snap.name, "id": snap.id, "kept": keep_snapshot},
        "mover_report": {k: report.get(k) for k in ("seconds", "totals", "deflate")},
        "component_yaml": yaml_text,
        "deleted": [f"{r['kind']} {r['name']}" for r in torn.deleted],
        "seconds": round(time.monotonic() - started, 1),
    }
    _artifacts(summary)
    return summary


def _artifacts(summary: dict[str, Any]) -> None:
    from zimage.sizing import human

    lines = [
        f"# Export of {summary['instance']}: generation {summary['generation']} of {summary['component']}",
        "",
        f"- {len(summary['volumes'])} volume(s), {human(summary['bytes'])} ({human(summary['gz_bytes'])} gzip), "
        f"{summary['seconds']} s in all; export `{summary['build_id']}`",
        f"- manifest `{summary['manifest']}`",
        f"- snapshot `{summary['snapshot']['name']}` " + ("kept" if summary["snapshot"]["kept"] else "deleted"),
        f"- temporary resources deleted: {len(summary['deleted'])}",
    ]
    if summary["component_yaml"]:
        lines += ["", "**The config has no such component.** Add:", "", "```yaml", summary["component_yaml"], "```"]
    try:
        create_markdown_artifact(
            key=f"export-instance-{summary['instance']}",
            markdown="\n".join(lines) + "\n",
            description=f"Export of {summary['instance']}",
        )
        create_table_artifact(
            [{k: v[k] for k in ("volser", "devnum", "bytes", "gz_bytes", "sha256")} for v in summary["volumes"]],
            key=f"export-volumes-{summary['instance']}",
            description=f"Volumes exported from {summary['instance']}",
        )
    except Exception as exc:  # the summary must not hide the run's own outcome
        log.warning("export summary artifact not written: %s", exc)
