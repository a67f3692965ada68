"""Tasks of deploy-host: ask the host what it holds (read only), choose the data path, and deploy a set.

The probe and the plan write nothing anywhere; the deploy runs the data mover on the host once, with
the short-lived pull key authorised on the storage server only for as long as it runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from infra import host as hosts
from infra import ssh
from infra.configfile import load_config
from infra.mover_local import percent_of
from infra.staging_store import open_store
from tasks.build import read_manifests
from tasks.ipl import ieasym_rewrites
from tasks.retry import retryable
from zimage import host_set, staging
from zimage.build import BuiltImage, build_image
from zimage.config import Config, Host
from zimage.host_symbols import SymbolPlan

DataPath = Literal["direct", "local", "relay"]


class HostSpaceError(RuntimeError):
    retryable = False


class DataPathError(RuntimeError):
    retryable = False


def same_machine(cfg: Config, host: Host) -> bool:
    return host.data_path == "local" or (
        host.data_path == "auto" and (cfg.storage.host, cfg.storage.port) == (host.host, host.port)
    )


def _base_job(host: Host, image: str) -> dict[str, Any]:
    return {"root": host.root, "image": image, "owner": host.owner}


def probe(cfg: Config, host: Host, image: str) -> host_set.HostState:
    """What the host holds, and whether it reaches the storage server; writes nothing."""
    pull = cfg.storage.transport == "sftp" and not same_machine(cfg, host) and host.data_path != "relay"
    job = {"action": "probe", **_base_job(host, image)}
    if pull:
        job["storage"] = {"host": cfg.storage.host, "port": cfg.storage.port}
    with ssh.connect(host) as session:
        result = hosts.run_mover(session, host, job, lambda line: None)
    return host_set.HostState.model_validate(result)


def choose_path(cfg: Config, host: Host, state: host_set.HostState) -> DataPath:
    if same_machine(cfg, host):
        return "local"
    if host.data_path == "relay" or cfg.storage.transport == "local":
        if host.data_path == "direct":
            raise DataPathError(
                f"hosts[{host.name}].data_path is direct, but the storage directory is on this machine "
                "(storage.transport local): use relay or auto"
            )
        return "relay"
    if state.storage_reachable and state.local_address:
        return "direct"
    if host.data_path == "direct":
        raise DataPathError(f"host {host.name} cannot reach the storage server: {state.storage_error}")
    return "relay"


def plan_deploy(
    config: str, image: str, host_name: str, generations: dict[str, str] | None = None
) -> tuple[BuiltImage, host_set.DeployedSet, host_set.HostState, host_set.HostPlan, DataPath]:
    """Everything a deploy decides before it writes: no side effects (the plan command's view)."""
    cfg = load_config(config)
    host = cfg.host(host_name)
    manifests = read_manifests.fn(config, image, generations)
    built = build_image(cfg, image, manifests)
    state = probe(cfg, host, image)
    path = choose_path(cfg, host, state)
    status = ieasym_rewrites(cfg, image, manifests, host_set.network_of(host, cfg.image(image))).status
    document = host_set.new_set(host, cfg.image(image), built, _devmap(cfg, host, image, built), status)
    return built, document, state, host_set.plan(host, built, document, state), path


def _devmap(cfg: Config, host: Host, image: str, built: BuiltImage) -> str:
    return host_set.host_devmap(host, cfg.image(image), built)


@task(name="probe-host", retries=2, retry_delay_seconds=5, retry_condition_fn=retryable, cache_policy=NO_CACHE)
def probe_host(config: str, host_name: str, image: str) -> host_set.HostState:
    cfg = load_config(config)
    return probe(cfg, cfg.host(host_name), image)


def _volume_jobs(cfg: Config, built: BuiltImage) -> list[dict[str, Any]]:
    return [
        {
            "volser": v.name, "file_name": v.file_name, "devnum": v.devnum, "devtype": v.devtype, "size": v.size,
            "sha256": v.sha256, "gz_sha256": v.gz_sha256, "gz_size": v.gz_size,
            "directory": staging.volume_dir(cfg.storage.root, cfg.component(v.component).source),
        }
        for v in built.volumes
    ]  # fmt: skip


def _progress_lines(
    logger: logging.Logger | logging.LoggerAdapter[Any], image: str
) -> tuple[Any, Callable[[str], None]]:
    """Log the mover's lines (bytes, rates) and move the progress artifact at most every 2 s."""
    artifact = create_progress_artifact(progress=0.0, description=f"Deploying {image} to the host")
    last = [0.0]

    def on_line(line: str) -> None:
        logger.info("%s", line)
        done = percent_of(line)
        if done is not None and time.monotonic() - last[0] > 2:
            update_progress_artifact(artifact, progress=done)
            last[0] = time.monotonic()

    return artifact, on_line


@task(name="deploy-set", retries=1, retry_delay_seconds=10, retry_condition_fn=retryable, cache_policy=NO_CACHE)
def deploy_set(
    config: str,
    host_name: str,
    image: str,
    built: BuiltImage,
    document: host_set.DeployedSet,
    plan: host_set.HostPlan,
    path: DataPath,
    local_address: str | None,
    rewrites: SymbolPlan,
) -> dict[str, Any]:
    """Build the set on the host and switch `current` to it; a retry resumes what the first try did."""
    cfg = load_config(config)
    host = cfg.host(host_name)
    logger = get_run_logger()
    artifact, on_line = _progress_lines(logger, image)
    volumes = _volume_jobs(cfg, built)
    job = {
        "action": "deploy", **_base_job(host, image), "set": document.set, "data_path": path, "volumes": volumes,
        "files": {"devmap": _devmap(cfg, host, image, built), "ipl": host_set.ipl_command(cfg.image(image))},
        "set_document": document.model_dump(mode="json"), "remove": plan.removed, "progress_every": 2.0,
        "rewrites": rewrites.mover_jobs(),
    }  # fmt: skip
    logger.info("host %s: set %s, data path %s", host.name, document.set, path)
    if path == "direct":
        with hosts.pulling_session(host, cfg.storage, local_address or "", image) as (session, key):
            logger.info(
                "storage server: read-only pull key %s authorised for %s until %s (%d stale keys removed)",
                key.run,
                local_address,
                key.expires.isoformat(timespec="minutes"),
                key.reaped,
            )
            job["storage"] = {
                "host": cfg.storage.host, "port": cfg.storage.port, "username": cfg.storage.username,
                "private_key": key.private_text, "known_hosts": hosts.storage_known_hosts(cfg.storage),
            }  # fmt: skip
            result = hosts.run_mover(session, host, job, on_line)
        logger.info("storage server: pull key %s removed", key.run)
    elif path == "relay":
        by_name = {v["file_name"]: v for v in volumes}
        with ssh.connect(host) as session, open_store(cfg.storage) as store:

            def open_volume(name: str) -> Any:
                vol = by_name[name]
                return store.open_read(f"{vol['directory']}/{name}"), vol["gz_size"]

            result = hosts.run_mover(session, host, job, on_line, open_volume)
    else:
        with ssh.connect(host) as session:
            result = hosts.run_mover(session, host, job, on_line)
    update_progress_artifact(artifact, progress=100.0)
    return {**result, "data_path": path}
