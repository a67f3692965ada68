"""Flow start-instance: start a stopped Wazi aaS server and wait until it runs."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.stop_instance import power_cloud
from infra.configfile import load_config
from tasks.instance_power import look_up_instance, power_instance


@flow(name="start-instance", flow_run_name="start-{instance}")
def start_instance(
    config: str,
    instance: str,
    poll_seconds: float = 10.0,
    timeout_minutes: float = 15.0,
    retry_base_seconds: float = 1.0,
) -> dict[str, Any]:
    """Start a Wazi aaS server named in `instances[]`; a running server is left as it is.

    Args:
        config: path of the zimage YAML config.
        instance: name of the server in `instances[]` (its VPC instance name).
        poll_seconds: interval between status reads of the instance.
        timeout_minutes: longest wait for the instance to run once asked.
        retry_base_seconds: first back-off of a retried API call (429, 5xx).
    """
    started = time.monotonic()
    cfg = load_config(config)
    spec = cfg.instance(instance)
    cloud = power_cloud(cfg, poll_seconds, timeout_minutes, retry_base_seconds)
    raw = look_up_instance(cloud, spec.name)
    result = power_instance(cloud, raw, "start")
    summary = {
        "instance": spec.name,
        "id": raw["id"],
        "was": raw.get("status"),
        "power": result,
        "seconds": round(time.monotonic() - started, 1),
    }
    create_markdown_artifact(
        key=f"start-instance-{spec.name}",
        markdown=f"# Instance {spec.name} running\n\n- was {summary['was']}, now running ({summary['seconds']} s)\n"
        "- z/OS IPLs on its own as the server boots; give it time before connecting\n",
        description=f"Start of instance {spec.name}",
    )
    return summary
