"""Prefect tasks of the extract-component flow: thin wrappers over infra.extraction and
infra.staging_store. Each task loads the config and opens its own connections, so a retry after a
dropped connection starts clean.
"""

from __future__ import annotations

import posixpath
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from infra import extraction
from infra.configfile import load_config
from infra.staging_store import RECORD_SUFFIX, open_store, prune, write_manifest
from tasks.cancellation import stops_when_cancelled
from tasks.retry import retryable
from zimage import staging
from zimage.manifests import ComponentManifest, StagedVolume

VOLUME_SLOTS_DEFAULT = 2  # volumes extracted at once on one source system, when its limit is new


def volume_limit(system: str) -> str:
    """Global concurrency limit bounding the volumes extracted at once on one source system."""
    return f"zimage-source-{system}"


def run_limit(system: str) -> str:
    """Global concurrency limit (1 slot) held by a run, so two runs never extract one system at once."""
    return f"zimage-source-{system}-run"


def limit_slots(name: str) -> int:
    """The slots of a global concurrency limit, as the operator set them (at least 1)."""
    with get_client(sync_client=True) as client:
        return max(1, client.read_global_concurrency_limit_by_name(name).limit)


def ensure_limit(name: str, limit: int) -> bool:
    """Create the global concurrency limit when it does not exist (True then); an existing one is
    left as the operator set it. Prefect ignores a missing limit unless strict, so the flow makes
    sure its limits exist and then acquires them strictly."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
        except ObjectAlreadyExists:  # another run created it meanwhile
            return False
        return True


@task(name="check-extraction", task_run_name="check-extraction-{component}", cache_policy=NO_CACHE)
def check_extraction(config: str, component: str, generation: str) -> dict[str, Any]:
    """Preflight: nothing is written but a probe file in the staging directory."""
    cfg = load_config(config)
    comp = cfg.component(component)
    with open_store(cfg.storage) as store:
        found = extraction.preflight(cfg, comp, generation, store)
    get_run_logger().info(
        "preflight of %s: %d volume(s), staging %s has %s bytes free, the run may need %s",
        component, len(comp.volumes), found.directory, f"{found.free_bytes:,}", f"{found.needed_bytes:,}",
    )
    return {"directory": found.directory, "free_bytes": found.free_bytes, "needed_bytes": found.needed_bytes}


@task(name="extract-volume", task_run_name="extract-{volser}", cache_policy=NO_CACHE, retries=3,
      retry_jitter_factor=0.5, retry_condition_fn=retryable)
@stops_when_cancelled
def extract_volume(config: str, component: str, volser: str, generation: str) -> dict[str, Any]:
    """Extract, stage and verify one volume (the flow bounds how many run at once)."""
    cfg = load_config(config)
    comp = cfg.component(component)
    volume = next((v for v in comp.volumes if v.volser == volser), None)
    if volume is None:
        raise KeyError(f"component {component!r} has no volume {volser}")
    source = cfg.source(comp.source)
    # no slot of the volume limit taken here: the flow, which holds the system's run limit, keeps no more
    # volumes in flight than that limit has slots (a slot per task cost two calls and a polled wait)
    with open_store(cfg.storage) as store:
        staged = extraction.stage_volume(
            store, cfg.storage, source, volume, generation=generation, component=component, log=get_run_logger()
        )
    return {**staged.volume.model_dump(mode="json"), "sent": staged.sent, "seconds": staged.seconds}


@task(name="discard-volumes", task_run_name="discard-{component}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=5, retry_condition_fn=retryable)
def discard_volumes(config: str, component: str, volsers: list[str], generation: str) -> list[str]:
    """Remove what failed volumes left in this generation (verified volumes stay for a resume)."""
    cfg = load_config(config)
    source = cfg.source(cfg.component(component).source)
    directory = staging.volume_dir(cfg.storage.root, source.name)
    with open_store(cfg.storage) as store:
        return [n for v in volsers for n in extraction.discard_volume(store, directory, v, generation)]


@task(name="write-manifest", task_run_name="write-manifest-{component}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=5, retry_condition_fn=retryable)
def record_generation(config: str, component: str, generation: str, volumes: list[dict[str, Any]]) -> str:
    """Write the generation's manifest beside the volumes, then drop the per-volume records it replaces."""
    cfg = load_config(config)
    comp = cfg.component(component)
    facts = {v["volser"]: StagedVolume.model_validate({k: v[k] for k in StagedVolume.model_fields}) for v in volumes}
    manifest = ComponentManifest(
        component=comp.name, system=comp.source, type=comp.type, generation=generation,
        created=max(f.finished for f in facts.values()),
        volumes=[facts[v.volser] for v in comp.volumes],  # config order
    )
    with open_store(cfg.storage) as store:
        path = write_manifest(store, staging.volume_dir(cfg.storage.root, comp.source), manifest)
        for vol in manifest.volumes:
            store.delete(posixpath.join(posixpath.dirname(path), vol.file_name + RECORD_SUFFIX))
    get_run_logger().info("manifest %s written: %d volume(s), %s bytes, %s gz bytes",
                          path, len(manifest.volumes), f"{manifest.bytes:,}", f"{manifest.gz_bytes:,}")
    return path


@task(name="prune-generations", task_run_name="prune-{component}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=5, retry_condition_fn=retryable)
def prune_generations(config: str, component: str, generation: str) -> list[str]:
    """Delete generations beyond the component's retention (only after `generation` is recorded)."""
    cfg = load_config(config)
    comp = cfg.component(component)
    with open_store(cfg.storage) as store:
        removed = prune(store, staging.volume_dir(cfg.storage.root, comp.source), comp, generation)
    if removed:
        get_run_logger().info("removed %d file(s) beyond retention %d: %s", len(removed), comp.retention,
                              ", ".join(removed))
    return removed
