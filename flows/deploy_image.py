"""Flow deploy-image: stage a built image into the object store, convert it with the data mover,
publish the custom image and the data snapshot, and tear down every temporary resource.

With `target.mover.mode: local` (the demo) the mover runs on this machine and "publishing" means
the qcow2, the data image and the report are left in `target.mover.output_directory`.

With `target.mover.mode: vsi`: check (nothing created yet) that the image and snapshot names are
free, that a mover image matches, the resource group exists and the image service may read the
COS instance → open the build's ledger and make sure no other build of the image runs → build
and stage → provision the mover VSI through the ledger → wait for its report in the bucket →
snapshot the data volume and create the custom image (both in the ledger until ready) → tear
down. Teardown runs in a `finally` and again from the flow's failure, cancellation and crash
hooks, which need nothing but the config and the ledger: a process worker runs them in its own
process after it has killed the flow's. A process killed outright leaves its ledger for
`reap-orphans`.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import wait
from prefect.logging import get_logger
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Cancelled, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.build_image import artifact_key, build_image
from flows.outcome import deploy_outcome
from infra import mover_config
from infra.configfile import load_config
from infra.cos import open_object_store
from infra.ibmcloud import Timing, connect, resolve_api_key
from tasks.convert import convert_locally
from tasks.ipl import find_ieasym
from tasks.mover_vsi import MoverCancelled, MoverResources, check_mover_image, provision_mover, wait_for_mover
from tasks.publish import check_image_import, check_product_names, copy_qcow2_to_root, publish
from tasks.stage import stage_auxiliary, stage_volume
from tasks.teardown import TeardownResult, check_image_free, open_ledger, teardown_flow_run, teardown_once
from zimage import objects, resources
from zimage.build import BuiltImage
from zimage.config import Config, ipv4_cidr
from zimage.host_symbols import LEFT_TO_WAZI, SymbolPlan, not_written, requested_network
from zimage.sizing import human

log = logging.getLogger(__name__)


def stage_image(config: str, built: BuiltImage) -> list[dict[str, Any]]:
    """Every volume in parallel (each copy is itself parallel in parts), then the auxiliary objects."""
    futures = [stage_volume.submit(config, built.image, v) for v in built.volumes]
    wait(futures)
    failed = [(v.name, f.state.message) for v, f in zip(built.volumes, futures, strict=True) if f.state.is_failed()]
    if failed:
        raise RuntimeError(
            "staging into the object store failed for " + ", ".join(n for n, _ in failed)
            + "; a re-run resumes from the parts already uploaded"
            + "".join(f"\n  {n}: {m}" for n, m in failed)
        )
    staged = [f.result() for f in futures]
    stage_auxiliary(config, built)
    return staged


# --- teardown from the state hooks ---------------------------------------------------------------


def _teardown_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Tear down what the flow run's ledger still holds. This may run in another process than the
    flow's (a process worker runs the cancellation hooks itself): it reads the config and the
    ledger again and needs nothing else."""
    logger = get_logger("zimage.teardown")  # Prefect's console, in whichever process runs the hook
    params = {**_PARAMETER_DEFAULTS, **(flow_run.parameters or {})}
    try:
        cfg = load_config(params["config"])
        if cfg.cloud.mover.mode == "local":
            return
        timing = _timing(params["poll_seconds"], params["resource_timeout_minutes"],
                         params["publish_timeout_minutes"], params["retry_base_seconds"], params["report_poll_seconds"])
        results = teardown_flow_run(
            lambda: connect(cfg.cloud, resolve_api_key(cfg.cloud), timing=timing),
            open_object_store(cfg.cloud.cos), str(flow_run.id),
        )
    except Exception:
        logger.exception("teardown after %s of flow run %s could not run; run reap-orphans", state.name, flow_run.id)
        raise
    for result in results:
        logger.info("teardown after %s: %d deleted, %d already gone, %d failures", state.name, len(result.deleted),
                    len(result.gone), len(result.failures))
        for failure in result.failures:
            logger.error("teardown after %s: %s", state.name, failure)


def _timing(
    poll_seconds: float, resource_timeout_minutes: float, publish_timeout_minutes: float, retry_base_seconds: float,
    report_poll_seconds: float,
) -> Timing:
    return Timing.of(
        poll_seconds, resource_timeout_minutes, retry_base_seconds, report_poll_seconds=report_poll_seconds,
        image_timeout_minutes=publish_timeout_minutes, snapshot_timeout_minutes=publish_timeout_minutes,
    )


@flow(
    name="deploy-image",
    flow_run_name="deploy-{image}",
    task_runner=ThreadPoolTaskRunner(max_workers=4),
    on_failure=[_teardown_hook],
    on_cancellation=[_teardown_hook],
    on_crashed=[_teardown_hook],
)
def deploy_image(
    config: str,
    image: str,
    generations: dict[str, str] | None = None,
    poll_seconds: float = 10.0,
    report_poll_seconds: float = 30.0,
    resource_timeout_minutes: float = 15.0,
    publish_timeout_minutes: float = 300.0,
    deadline_minutes: float | None = None,
    retry_base_seconds: float = 1.0,
    ssh_from: str = "0.0.0.0/0",
    stale_minutes: float = 30.0,
    keep_mover_key: bool = False,
) -> State[Any]:
    """Make the custom image and the data snapshot of IMAGE from its staged components.

    Args:
        config: path of the zimage YAML config on the worker.
        image: name of the image in the config.
        generations: component name -> generation to use; default: the newest verified one of each.
        poll_seconds: interval between status reads of cloud resources (mode vsi).
        report_poll_seconds: interval between reads of the mover's progress and report objects.
        resource_timeout_minutes: longest wait for one resource to become ready or to be deleted.
        publish_timeout_minutes: longest wait for the custom image and for the snapshot.
        deadline_minutes: longest the conversion may take; default target.mover.deadline_hours.
        retry_base_seconds: first back-off of a retried API call (429, 5xx), doubled each time.
        ssh_from: CIDR allowed to reach port 22 of the mover when target.mover.ssh_access is set.
        stale_minutes: the run fails when the mover's progress has not changed for this long (or
            none came in this long after its start): a mover that died is not waited for until the deadline.
        keep_mover_key: keep the mover's SSH private key (target.mover.ssh_access) after the teardown.
    """
    cfg = load_config(config)
    cfg.image(image)
    if cfg.cloud.mover.mode == "local":
        return _deploy_locally(config, cfg, image, generations)
    ipv4_cidr(ssh_from, "ssh_from")
    if stale_minutes <= 0:
        raise ValueError(f"stale_minutes {stale_minutes}: expected more than 0")
    timing = _timing(poll_seconds, resource_timeout_minutes, publish_timeout_minutes, retry_base_seconds,
                     report_poll_seconds)
    deadline_s = (deadline_minutes * 60) if deadline_minutes is not None else cfg.cloud.mover.deadline_hours * 3600
    waits = _Waits(deadline_s, stale_minutes * 60, mover_config.lifetimes(deadline_s, 2 * timing.ready_timeout))
    return _deploy_vsi(config, cfg, image, generations, timing, waits, ssh_from, keep_mover_key)


_PARAMETER_DEFAULTS = {
    name: p.default for name, p in inspect.signature(deploy_image.fn).parameters.items() if p.default is not p.empty
}


class _Waits:
    """How long the run waits for its mover, and so how long the mover's URLs live."""

    def __init__(self, deadline_s: float, stale_s: float, lifetime: mover_config.Lifetimes) -> None:
        self.deadline_s, self.stale_s, self.lifetime = deadline_s, stale_s, lifetime


def _stage(config: str, image: str, generations: dict[str, str] | None) -> tuple[BuiltImage, list[dict[str, Any]]]:
    built = build_image(config, image, generations)
    staged = stage_image(config, built)
    moved = sum(s["bytes"] for s in staged if not s["skipped"])
    get_run_logger().info(
        "staged %d volume(s) of %s: %s sent, %d already present", len(staged), image, human(moved),
        sum(1 for s in staged if s["skipped"]),
    )
    create_table_artifact(staged, key=artifact_key("staged", image), description=f"Objects of image {image}")
    return built, staged


def _deploy_locally(config: str, cfg: Config, image: str, generations: dict[str, str] | None) -> State[Any]:
    started = time.monotonic()
    built, _ = _stage(config, image, generations)
    converted = convert_locally(config, image, built.size)
    symbols = (
        SymbolPlan(rewrites=[], status=LEFT_TO_WAZI) if requested_network(cfg.image(image)) is None
        else not_written("the local mover writes the volumes straight into the data image and rewrites no member")
    )
    summary = {
        "image": image,
        "mode": "local",
        "bytes": built.size,
        "volumes": len(built.volumes),
        "qcow2": converted["qcow2"],
        "data_image": converted["data_image"],
        "report": converted["report"],
        "network_symbols": symbols.status,
        "seconds": round(time.monotonic() - started, 1),
    }
    create_markdown_artifact(
        key=artifact_key("deploy-image", image),
        markdown=(
            f"# Image {image} converted on this machine\n\n"
            f"- {len(built.volumes)} volume(s), {human(built.size)}, in {summary['seconds']} s\n"
            f"- qcow2: `{converted['qcow2']}` ({human(converted['qcow2_bytes'])})\n"
            f"- data volume image: `{converted['data_image']}`\n"
            f"- report: `{converted['report']}`\n"
            f"- network symbols {symbols.status}\n"
        ),
        description=f"Deploy of image {image}",
    )
    return deploy_outcome(summary, symbols, f"image {image} deployed")


def _deploy_vsi(
    config: str,
    cfg: Config,
    image: str,
    generations: dict[str, str] | None,
    timing: Timing,
    waits: _Waits,
    ssh_from: str,
    keep_mover_key: bool,
) -> Any:
    logger = get_run_logger()
    started = time.monotonic()
    spec = cfg.image(image)
    index = [i.name for i in cfg.images].index(image)
    target = cfg.cloud
    # secrets and every check that needs no resource come first: a refusal here creates nothing
    cloud = connect(target, resolve_api_key(target), timing=timing)
    check_product_names(cloud, spec, index)
    mover_image = check_mover_image(cloud, target.mover.image)
    check_image_import(cloud, target.cos.instance_name)
    store = open_object_store(target.cos)

    build_id = resources.new_build_id()
    flow_run_id = current_flow_run.id
    ledger = open_ledger(store, build_id, image, flow_run_id, keep_key=keep_mover_key)
    logger.info("build %s of image %s: resources are named %s*", build_id, image, resources.name(build_id, ""))
    built: BuiltImage | None = None
    symbols = SymbolPlan(rewrites=[], status=LEFT_TO_WAZI)
    mover: MoverResources | None = None
    outcome = "failed"
    products: dict[str, Any] = {}
    report: dict[str, Any] = {}
    convert_started = time.monotonic()
    try:
        check_image_free(store, ledger)  # two builds of one image never run at once
        built, staged = _stage(config, image, generations)
        symbols = find_ieasym(config, image, generations=built.generations)
        logger.info("network symbols %s", symbols.status)
        mover = provision_mover(cloud, ledger, store, cfg, built, mover_image, waits.lifetime, ssh_from,
                                symbols.mover_jobs())
        convert_started = time.monotonic()
        report = wait_for_mover(cloud, store, image, build_id, mover.instance, waits.deadline_s, waits.stale_s,
                                flow_run_id)
        convert_seconds = time.monotonic() - convert_started
        products = publish(cloud, ledger, target, spec, mover.volumes["data"])
        if target.cos.key_layout == objects.REFERENCE:
            products["qcow2_root_key"] = copy_qcow2_to_root(store, image, build_id)
        outcome = "succeeded"
    except MoverCancelled as exc:
        outcome = "cancelled"
        logger.warning("%s: tearing down", exc)
    finally:
        torn = teardown_once(cloud, ledger, store)
        if not torn.failures:  # otherwise the failure hook tries once more
            torn.attempt(f"ledger of build {build_id}", lambda: ledger.finish(ok=outcome == "succeeded"))
        _artifacts(image, build_id, built, mover, products, report, torn, outcome, time.monotonic() - started,
                   symbols.status)
    if torn.failures:
        raise RuntimeError(
            f"build {build_id}: teardown failed {len(torn.failures)} time(s); run reap-orphans. "
            + "; ".join(torn.failures)
        )
    if outcome == "cancelled":
        return Cancelled(message=f"deploy of {image} cancelled; build {build_id} torn down")
    assert built is not None
    summary = {
        "image": image,
        "mode": "vsi",
        "build_id": build_id,
        "bytes": built.size,
        "volumes": len(built.volumes),
        "staged": staged,
        "custom_image": products["image"],
        "snapshot": products["snapshot"],
        **({"qcow2_root_key": products["qcow2_root_key"]} if "qcow2_root_key" in products else {}),
        "convert_seconds": round(convert_seconds, 1),
        "mover_report": {k: report.get(k) for k in ("seconds", "totals", "phases")},
        "network_symbols": symbols.status,
        "deployed_sha256": {
            v["name"]: v["deployed-sha256"] for v in report.get("volumes") or [] if v.get("deployed-sha256")
        },
        "deleted": [f"{r['kind']} {r['name']}" for r in torn.deleted],
        "seconds": round(time.monotonic() - started, 1),
    }
    return deploy_outcome(summary, symbols, f"image {image} deployed")


def _artifacts(
    image: str,
    build_id: str,
    built: BuiltImage | None,
    mover: MoverResources | None,
    products: dict[str, Any],
    report: dict[str, Any],
    torn: TeardownResult,
    outcome: str,
    seconds: float,
    symbols: str,
) -> None:
    lines = [f"# Deploy of image {image}: {outcome}", ""]
    if built is not None:
        lines.append(f"- build `{build_id}`, {len(built.volumes)} volume(s), {human(built.size)} "
                     f"({human(built.gz_size)} compressed), {seconds:.0f} s in all")
    else:
        lines.append(f"- build `{build_id}`, stopped before staging, {seconds:.0f} s in all")
    if mover is not None:
        lines.append(f"- mover `{mover.instance.name}` ({mover.image}), user data {mover.user_data_bytes} bytes")
        if mover.private_key_file:
            lines.append(f"- SSH private key `{mover.private_key_file}` (mode 0600; deleted at teardown unless "
                         "keep_mover_key)")
    if report:
        totals = report.get("totals") or {}
        lines.append(f"- conversion: {human(totals.get('bytes') or 0)} in {report.get('seconds')} s "
                     f"({totals.get('mb-per-s')} MB/s)")
        lines += [f"- `{v['name']}`: extracted sha256 `{v['sha256']}`, deployed `{v['deployed-sha256']}`"
                  for v in report.get("volumes") or [] if v.get("deployed-sha256")]
    if built is not None:
        lines.append(f"- network symbols {symbols}")
    if products:
        img, snap = products["image"], products["snapshot"]
        lines += [
            "",
            "| product | name | id |",
            "|---|---|---|",
            f"| custom image ({img['os']}) | `{img['name']}` | `{img['id']}` |",
            f"| snapshot of the data volume | `{snap['name']}` | `{snap['id']}` |",
        ]
    lines += ["", f"Temporary resources deleted: {len(torn.deleted)}"
              + (f", already gone: {len(torn.gone)}" if torn.gone else "")]
    lines += [f"- {r['kind']} `{r['name']}`" for r in torn.deleted]
    if torn.failures:
        lines += ["", "**Teardown failures** (run `zimage run reap-orphans`):"] + [f"- {f}" for f in torn.failures]
    try:
        create_markdown_artifact(key=artifact_key("deploy-image", image), markdown="\n".join(lines) + "\n",
                                 description=f"Deploy of image {image}")
        if torn.rows():
            create_table_artifact(torn.rows(), key=f"teardown-{build_id}", description=f"Teardown of build {build_id}")
    except Exception as exc:  # the summary must not hide the run's own outcome
        log.warning("deploy summary artifact not written: %s", exc)
