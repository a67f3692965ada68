"""Tasks of stop-instance and start-instance: the z/OS shutdown and the VPC power actions.

Both are safe to run again: a server already stopped (or running) is left as it is.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.ibmcloud import IbmCloud
from infra.instance_power import ShutdownFailed, as_resource, find_instance, power, shutdown_zos
from zimage.config import Instance

# States from which a power action makes sense; anything else (pending, deleting, failed) is refused.
SETTLED = ("running", "stopped")


@task(name="look-up-instance", cache_policy=NO_CACHE)
def look_up_instance(cloud: IbmCloud, name: str) -> dict[str, Any]:
    """The server as the API shows it; refuses one in a state no power action should touch."""
    raw = find_instance(cloud.vpc, name)
    if raw.get("status") not in (*SETTLED, "stopping", "starting"):
        raise RuntimeError(f"instance {name} is {raw.get('status')}: nothing was done")
    return raw


# Not retried: a second shutdown command on a z/OS that is going down helps nobody.
@task(name="shut-down-zos", cache_policy=NO_CACHE)
def shut_down_zos(endpoint: Instance, poll_seconds: float) -> dict[str, Any]:
    log = get_run_logger()
    try:
        result = shutdown_zos(endpoint, poll=poll_seconds)
    except ShutdownFailed as exc:
        log.error("%s", exc)
        raise
    log.info(
        "z/OS of %s shut down: command %s after %.1f s, silent after %.1f s",
        endpoint.name,
        "ended" if result.exit_status == 0 else "lost its connection",
        result.command_seconds,
        result.silent_after_seconds,
    )
    return asdict(result)


@task(name="power-instance", cache_policy=NO_CACHE)  # API retries are the adapter's
def power_instance(cloud: IbmCloud, raw: dict[str, Any], action: str) -> dict[str, Any]:
    """`stop` or `start`, then wait for the state; nothing is sent when it is there already."""
    log = get_run_logger()
    wanted = "stopped" if action == "stop" else "running"
    instance = as_resource(raw)
    started = time.monotonic()
    current = cloud.vpc.status(instance)
    if current == wanted:
        log.info("instance %s is already %s", instance.name, wanted)
        return {"instance": instance.name, "id": instance.id, "status": wanted, "changed": False, "seconds": 0.0}
    timing = cloud.timing
    if current in ("stopping", "starting"):  # a transition already under way: wait for it first
        current = cloud.vpc.wait_for(instance, SETTLED, timeout=timing.ready_timeout, poll=timing.poll)["status"]
    if current != wanted:
        power(cloud.vpc, instance, action, timeout=timing.ready_timeout, poll=timing.poll)
    seconds = round(time.monotonic() - started, 1)
    log.info("instance %s is %s (%.1f s)", instance.name, wanted, seconds)
    return {
        "instance": instance.name,
        "id": instance.id,
        "status": wanted,
        "changed": current != wanted,
        "seconds": seconds,
    }
