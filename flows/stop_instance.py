"""Flow stop-instance: shut z/OS down, wait until it no longer answers, then stop the VPC instance.

Stopping a Wazi aaS server with its subsystems up can damage the next start (the console's stop does
just that), so the instance is stopped only after the configured shutdown command has ended and z/OS
has stopped answering on its SSH port. When either fails or the time runs out, the run fails and the
server is left running. `force` skips the z/OS part; the summary then carries a warning.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from infra.configfile import load_config
from infra.ibmcloud import IbmCloud, Timing, connect, resolve_api_key
from tasks.instance_power import look_up_instance, power_instance, shut_down_zos
from zimage.config import Config

FORCE_WARNING = "the z/OS shutdown was skipped (force): subsystems that were still up may not start cleanly next time"


def power_cloud(cfg: Config, poll_seconds: float, timeout_minutes: float, retry_base_seconds: float) -> IbmCloud:
    """The clients for a power action: short-lived, nothing created, no resource group needed."""
    timing = Timing.of(poll_seconds, timeout_minutes, retry_base_seconds)
    return connect(cfg.cloud, resolve_api_key(cfg.cloud), timing=timing, resource_group=False)


def stop_gracefully(
    cfg: Config, cloud: IbmCloud, instance: str, force: bool, answer_poll_seconds: float
) -> dict[str, Any]:
    """The stop itself, shared with export-instance --stop."""
    log = get_run_logger()
    spec = cfg.instance(instance)
    raw = look_up_instance(cloud, spec.name)
    summary: dict[str, Any] = {"instance": spec.name, "id": raw["id"], "was": raw.get("status"), "warnings": []}
    if raw.get("status") == "stopped":
        log.info("instance %s is already stopped: nothing to do", spec.name)
        summary["shutdown"] = None
    elif force:
        log.warning("instance %s: %s", spec.name, FORCE_WARNING)
        summary["warnings"].append(FORCE_WARNING)
        summary["shutdown"] = None
    else:
        summary["shutdown"] = shut_down_zos(spec, answer_poll_seconds)
    summary["power"] = power_instance(cloud, raw, "stop")
    return summary


@flow(name="stop-instance", flow_run_name="stop-{instance}")
def stop_instance(
    config: str,
    instance: str,
    force: bool = False,
    poll_seconds: float = 10.0,
    answer_poll_seconds: float = 10.0,
    timeout_minutes: float = 15.0,
    retry_base_seconds: float = 1.0,
) -> dict[str, Any]:
    """Shut down z/OS on a Wazi aaS server and stop its VPC instance.

    Args:
        config: path of the zimage YAML config (`instances[]` names the server and its shutdown).
        instance: name of the server in `instances[]` (its VPC instance name).
        force: skip the z/OS shutdown and stop the instance at once (the summary warns).
        poll_seconds: interval between status reads of the instance.
        answer_poll_seconds: interval between checks whether z/OS still answers after the shutdown command.
        timeout_minutes: longest wait for the instance to stop once asked.
        retry_base_seconds: first back-off of a retried API call (429, 5xx).
    """
    started = time.monotonic()
    cfg = load_config(config)
    cfg.instance(instance)
    cloud = power_cloud(cfg, poll_seconds, timeout_minutes, retry_base_seconds)
    summary = stop_gracefully(cfg, cloud, instance, force, answer_poll_seconds)
    summary["seconds"] = round(time.monotonic() - started, 1)
    _artifact(summary)
    return summary


def _artifact(summary: dict[str, Any]) -> None:
    shutdown = summary.get("shutdown")
    lines = [
        f"# Instance {summary['instance']} stopped",
        "",
        f"- was {summary['was']}, now stopped ({summary['seconds']} s in all)",
    ]
    if shutdown:
        lines.append(
            f"- z/OS shutdown command: {'exit 0' if shutdown['exit_status'] == 0 else 'connection dropped'}"
            f" after {shutdown['command_seconds']} s; z/OS silent after {shutdown['silent_after_seconds']} s"
        )
    lines += [f"- **warning**: {w}" for w in summary["warnings"]]
    create_markdown_artifact(
        key=f"stop-instance-{summary['instance']}",
        markdown="\n".join(lines) + "\n",
        description=f"Stop of instance {summary['instance']}",
    )
