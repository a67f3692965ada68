"""Flow deploy-image: stage a built image into the object store, convert it with the data mover,
publish the custom image and the data snapshot, and tear down every temporary resource.

With `target.mover.mode: local` (the demo) the mover runs on this machine and "publishing" means
the qcow2, the data image and the report are left in `target.mover.output_directory`.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.build_image import artifact_key, build_image
from infra.configfile import load_config
from tasks.convert import convert_locally
from tasks.stage import stage_auxiliary, stage_volume
from zimage.build import BuiltImage
from zimage.sizing import human


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


@flow(name="deploy-image", task_runner=ThreadPoolTaskRunner(max_workers=4))
def deploy_image(config: str, image: str, generations: dict[str, str] | None = None) -> dict[str, Any]:
    """Make the custom image and the data snapshot of IMAGE from its staged components.

    Args:
        config: path of the zimage YAML config on the worker.
        image: name of the image in the config.
        generations: component name -> generation to use; default: the newest verified one of each.
    """
    log = get_run_logger()
    cfg = load_config(config)
    cfg.image(image)
    started = time.monotonic()
    built = build_image(config, image, generations)
    staged = stage_image(config, built)
    moved = sum(s["bytes"] for s in staged if not s["skipped"])
    log.info("staged %d volume(s) of %s: %s sent, %d already present", len(staged), image, human(moved),
             sum(1 for s in staged if s["skipped"]))
    create_table_artifact(staged, key=artifact_key("staged", image), description=f"Objects of image {image}")
    if cfg.target.mover.mode == "local":
        converted = convert_locally(config, image, built.size)
        summary = {
            "image": image,
            "mode": "local",
            "bytes": built.size,
            "volumes": len(built.volumes),
            "qcow2": converted["qcow2"],
            "data_image": converted["data_image"],
            "report": converted["report"],
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
            ),
            description=f"Deploy of image {image}",
        )
        return summary
    raise NotImplementedError("mover mode vsi is provisioned by the VPC path")
