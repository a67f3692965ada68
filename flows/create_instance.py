"""Flow create-instance: a Wazi as a Service virtual server from a deployed image.

The instance boots the custom image `<image>` on an s390x profile (mz2o-2x16 by default) and gets
a data volume restored from the snapshot `<image>-data`, on an existing subnet with an existing
SSH key, optionally on a reserved IP. These resources are the product and are kept; when the run
fails half-way, what this run created is deleted again.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from infra.configfile import load_config
from infra.iam import RetryPolicy
from infra.ibmcloud import Timing, connect, resolve_api_key
from tasks.instance import InstanceSetupError, create_wazi_instance
from zimage import names


@flow(name="create-instance", flow_run_name="create-instance-{name}")
def create_instance(
    config: str,
    image: str,
    name: str,
    profile: str = "mz2o-2x16",
    subnet: str | None = None,
    ssh_key: str | None = None,
    reserved_ip: str | None = None,
    security_group: str | None = None,
    data_volume_profile: str = "general-purpose",
    poll_seconds: float = 10.0,
    timeout_minutes: float = 30.0,
    retry_base_seconds: float = 1.0,
) -> dict[str, Any]:
    """Create a Wazi aaS virtual server from the custom image IMAGE and its data snapshot.

    Args:
        config: path of the zimage YAML config (its target names the account and region).
        image: name of the custom image (the snapshot is IMAGE-data).
        name: name of the new virtual server (lowercase letters, digits, '-').
        profile: s390x instance profile.
        subnet: name or id of the subnet the server's interface goes on.
        ssh_key: name or id of the VPC SSH key put on the server.
        reserved_ip: an IPv4 address of the subnet to reserve for the server, or the id of a reserved IP.
        security_group: name or id of a security group; default: the VPC's default group.
        data_volume_profile: profile of the data volume restored from the snapshot.
        poll_seconds: interval between status reads.
        timeout_minutes: longest wait for the server to run.
        retry_base_seconds: first back-off of a retried API call (429, 5xx).
    """
    log = get_run_logger()
    names.vpc_name(name)
    if not subnet or not ssh_key:
        raise InstanceSetupError("give subnet and ssh_key (name or id of an existing subnet and VPC SSH key)")
    cfg = load_config(config)
    timing = Timing(
        poll=poll_seconds, ready_timeout=timeout_minutes * 60, delete_timeout=timeout_minutes * 60,
        retry=RetryPolicy(base_delay=retry_base_seconds, max_delay=max(30 * retry_base_seconds, retry_base_seconds)),
    )
    cloud = connect(cfg.cloud, resolve_api_key(cfg.cloud), timing=timing)
    created = create_wazi_instance(
        cloud, name, image, subnet, ssh_key, profile, reserved_ip, security_group, data_volume_profile
    )
    summary = created["summary"]
    inst_id, address = summary["instance"]["id"], summary["instance"]["address"]
    snap_name, key_name = created["snapshot_name"], created["key_name"]
    log.info("instance %s is running at %s (%s, image %s, data volume from %s)", name, address, profile, image,
             snap_name)
    create_markdown_artifact(
        key=f"create-instance-{name}",
        markdown=(
            f"# Wazi aaS instance {name}\n\n"
            f"| | |\n|---|---|\n| id | `{inst_id}` |\n| profile | {profile} |\n| address | {address} |\n"
            f"| image | `{image}` |\n| data volume | `{summary['data_volume']}` from snapshot `{snap_name}` |\n"
            f"| SSH key | `{key_name}` |\n| took | {summary['seconds']} s |\n\n"
            "The server and its volumes are kept; delete them when no longer needed.\n"
        ),
        description=f"Instance {name}",
    )
    return summary
