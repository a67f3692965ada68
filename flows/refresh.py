"""Flow refresh: one image from its source systems to IBM Cloud, in one run.

preflight → extract-component (each component of the image) → deploy-image (build, stage,
convert, publish, teardown) → optionally create-instance. Scheduled per source system from
prefect.yaml; runs of one system never overlap (the extraction holds the system's run limit and
the deployments carry a concurrency limit of 1).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.build_image import artifact_key
from flows.create_instance import create_instance as create_instance_flow
from flows.deploy_host import deploy_host
from flows.deploy_image import deploy_image
from flows.extract_component import extract_component
from flows.preflight import preflight
from infra.configfile import load_config
from zimage.sizing import human


@flow(name="refresh", flow_run_name="refresh-{image}")
def refresh(
    config: str,
    image: str,
    create_instance: bool = False,
    instance_name: str | None = None,
    instance_subnet: str | None = None,
    instance_ssh_key: str | None = None,
    skip_preflight: bool = False,
    host: str | None = None,
    also_ibm_cloud: bool = False,
) -> dict[str, Any]:
    """Refresh IMAGE: extract its components again and deploy a new custom image and snapshot.

    Args:
        config: path of the zimage YAML config on the worker.
        image: name of the image in the config.
        create_instance: also create a Wazi aaS virtual server from the new image.
        instance_name: name of that server (default: IMAGE-vsi, the image name and `-vsi`).
        instance_subnet: subnet (name or id) of that server; needed with create_instance.
        instance_ssh_key: VPC SSH key (name or id) of that server; needed with create_instance.
        skip_preflight: do not run the preflight checks first (not recommended).
        host: deploy to this emulator host (hosts[].name) instead of IBM Cloud.
        also_ibm_cloud: with host, deploy the same generations to IBM Cloud as well (needs target:).
    """
    cfg = load_config(config)
    components = cfg.image(image).components
    if host is not None:
        cfg.host(host)
        if create_instance and not also_ibm_cloud:
            raise ValueError("create_instance makes a Wazi aaS server in IBM Cloud: with host, it needs also_ibm_cloud")
    if host is None or also_ibm_cloud:
        cfg.cloud  # noqa: B018 - a config without target: fails here, before any extraction
    if create_instance and not (instance_subnet and instance_ssh_key):
        raise ValueError("create_instance needs instance_subnet and instance_ssh_key (names or ids in the VPC)")
    started = time.monotonic()
    if not skip_preflight:
        preflight(config, image=image, cloud_check=host is None or also_ibm_cloud)  # the cloud only if deployed to
    extracted = {name: extract_component(config, name) for name in components}
    generations = {name: e["generation"] for name, e in extracted.items()}
    on_host = deploy_host(config, image, host, generations) if host else None
    deployed = deploy_image(config, image, generations) if host is None or also_ibm_cloud else {}
    instance = None
    if create_instance:
        instance = create_instance_flow(
            config, image, name=instance_name or f"{image}-vsi", subnet=instance_subnet, ssh_key=instance_ssh_key
        )
    seconds = time.monotonic() - started
    total = sum(e["bytes"] for e in extracted.values())
    create_markdown_artifact(
        key=artifact_key("refresh", image),
        markdown=(
            f"# Refresh of {image}\n\n"
            f"- components: {', '.join(f'{n} ({g})' for n, g in generations.items())}\n"
            f"- volumes: {sum(len(e['volumes']) for e in extracted.values())}, {human(total)}\n"
            f"- took {seconds / 60:.1f} min\n"
            + "".join(f"- {k}: `{v}`\n" for k, v in deployed.items() if k in ("image_id", "snapshot_id", "qcow2"))
            + (f"- instance: `{instance}`\n" if instance else "")
            + (f"- host {host}: set `{on_host['set']}`; network symbols {on_host['network_symbols']}\n"
               if on_host else "")
        ),
        description=f"Refresh of image {image}",
    )
    return {"image": image, "generations": generations, "deploy": deployed, "instance": instance,
            "host": on_host, "seconds": round(seconds, 1)}
