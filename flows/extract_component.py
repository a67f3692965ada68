"""Flow extract-component: copy every volume of a component from its source system to the
storage server as one new generation, verify each copy there, write the generation's manifest and
only then delete the generations beyond the component's retention (WIB's "create component").

    zimage run extract-component --config CONFIG --component NAME [--generation YYYY-MM-DD_HH_MM_SS]

Giving the generation of an unfinished run resumes it: volumes already staged and verified in it
are not sent again.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.concurrency.sync import concurrency
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff

from infra.configfile import load_config
from tasks.cancellation import CancellableTaskRunner
from tasks.extract import (
    VOLUME_SLOTS_DEFAULT,
    check_extraction,
    discard_volumes,
    ensure_limit,
    extract_volume,
    limit_slots,
    prune_generations,
    record_generation,
    run_limit,
    volume_limit,
)
from zimage import staging
from zimage.config import Component


class ExtractionFailed(RuntimeError):
    pass


def _row(v: dict[str, Any]) -> dict[str, Any]:
    seconds = float(v["seconds"])
    return {
        "volser": v["volser"],
        "devnum": v["devnum"],
        "bytes": v["bytes"],
        "compressed": v["gz_bytes"],
        "ratio": round(v["bytes"] / v["gz_bytes"], 2) if v["gz_bytes"] else 0,
        "seconds": round(seconds, 2),
        "MB/s": round(v["bytes"] / 1e6 / seconds, 1) if seconds > 0 else None,
        "sha256": v["sha256"],
        "sent": "yes" if v["sent"] else "already staged",
    }


@flow(name="extract-component", flow_run_name="extract-{component}", task_runner=CancellableTaskRunner(max_workers=8))
def extract_component(
    config: str,
    component: str,
    generation: str | None = None,
    retry_delay_seconds: float = 10.0,
    lock_wait_seconds: float = 60.0,
    retries: int = 3,
) -> dict[str, Any]:
    """Extract, stage and verify every volume of `component`; returns the generation's summary.

    A volume whose extraction fails in a way that may pass (dropped connection, timeout, non-zero
    exit, bad copy) is tried again up to `retries` times, after `retry_delay_seconds` doubling
    each time, with jitter. A mistake (unknown name, access denied) fails at once.

    Args:
        config: path of the zimage YAML config on the worker.
        component: name of the component in the config.
        generation: resume this unfinished generation (YYYY-MM-DD_HH_MM_SS); default: a new one.
        retry_delay_seconds: wait before the first retry of a volume, doubled for each further one.
        lock_wait_seconds: longest wait for another run extracting from the same system to finish.
        retries: further tries of a volume whose extraction failed in a way that may pass.
    """
    log = get_run_logger()
    cfg = load_config(config)  # every config problem before any side effect
    comp = cfg.component(component)
    gen = generation or staging.generation_of(datetime.now(UTC))
    staging.generation_time(gen)
    system = comp.source
    ensure_limit(run_limit(system), 1)
    if ensure_limit(volume_limit(system), VOLUME_SLOTS_DEFAULT):
        log.info("created concurrency limit %s with %d slots (volumes extracted at once on %s)",
                 volume_limit(system), VOLUME_SLOTS_DEFAULT, system)
    with ExitStack() as held:
        try:
            held.enter_context(concurrency(run_limit(system), occupy=1, timeout_seconds=lock_wait_seconds, strict=True))
        except TimeoutError:
            raise ExtractionFailed(
                f"another run is extracting from {system} (concurrency limit {run_limit(system)} stayed taken "
                f"for {lock_wait_seconds:.0f} s); try again when it has finished"
            ) from None
        return _extract(config, comp, gen, retry_delay_seconds, retries)


def _extract(config: str, comp: Component, gen: str, retry_delay_seconds: float, retries: int) -> dict[str, Any]:
    log = get_run_logger()
    check_extraction(config, comp.name, gen)
    log.info("extracting %d volume(s) of %s from %s as generation %s", len(comp.volumes), comp.name, comp.source, gen)
    progress = create_progress_artifact(
        0.0, key=f"extract-{comp.name}-progress", description=f"{comp.name} generation {gen}: volumes done"
    )
    task = extract_volume.with_options(
        retries=retries, retry_delay_seconds=exponential_backoff(backoff_factor=retry_delay_seconds),
        retry_jitter_factor=0.5,
    )
    # No more volumes in flight than the system's limit has slots: a task refused a slot polls again after
    # a back-off that grows with the waiters (up to 30 s), so hundreds of waiting tasks leave freed slots idle.
    waiting = [v.volser for v in comp.volumes]
    futures: dict[Any, str] = {}

    def submit_next() -> None:
        volser = waiting.pop(0)
        futures[task.submit(config, comp.name, volser, gen)] = volser

    for _ in range(min(limit_slots(volume_limit(comp.source)), len(waiting))):
        submit_next()
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    while futures:
        future = next(as_completed(list(futures)))
        volser = futures.pop(future)
        try:
            done[volser] = future.result()
        except Exception as exc:
            failed[volser] = str(exc)
            log.error("%s failed: %s", volser, exc)
        if waiting:
            submit_next()
        update_progress_artifact(progress, 100.0 * (len(done) + len(failed)) / len(comp.volumes))
    if failed:
        discard_volumes(config, comp.name, sorted(failed), gen)
        raise ExtractionFailed(
            f"{len(failed)} of {len(comp.volumes)} volume(s) of {comp.name} failed; nothing of them stays staged"
            + (f"; the {len(done)} verified volume(s) stay in generation {gen}: run again with --generation {gen} "
               "to resume" if done else "")
            + "".join(f"\n  {volser}: {msg}" for volser, msg in sorted(failed.items()))
        )
    volumes = [done[v.volser] for v in comp.volumes]
    manifest = record_generation(config, comp.name, gen, volumes)
    removed = prune_generations(config, comp.name, gen)
    rows = [_row(v) for v in volumes]
    create_table_artifact(rows, key=f"extract-{comp.name}", description=f"{comp.name} generation {gen}")
    total, gz = sum(v["bytes"] for v in volumes), sum(v["gz_bytes"] for v in volumes)
    log.info("%s generation %s: %d volume(s), %s bytes staged as %s gz bytes", comp.name, gen, len(volumes),
             f"{total:,}", f"{gz:,}")
    return {
        "component": comp.name,
        "system": comp.source,
        "generation": gen,
        "manifest": manifest,
        "bytes": total,
        "gz_bytes": gz,
        "volumes": volumes,
        "removed": removed,
    }
