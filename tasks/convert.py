"""Conversion with the data mover on this machine (mover mode `local`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from infra import mover_local
from infra.configfile import load_config
from zimage import objects


@task(name="convert-locally", task_run_name="convert-{image}", cache_policy=NO_CACHE)
def convert_locally(config: str, image: str, total_bytes: int) -> dict[str, Any]:
    cfg = load_config(config)
    mover = cfg.target.mover
    # The inputs' prefix in the local object store (the store's root in the reference key layout) is a
    # directory holding every object the mover reads.
    objects_dir = Path(cfg.target.cos.local_directory or "") / objects.input_prefix(image, cfg.target.cos.key_layout)
    out_dir = Path(mover.output_directory or "")
    logger = get_run_logger()
    artifact = create_progress_artifact(progress=0.0, description=f"Data mover converting {image}")
    last = [0.0]

    def on_line(line: str) -> None:
        logger.info("%s", line)
        # the artifact is updated at most every 2 s
        done = mover_local.percent_of(line)
        if done is not None and time.monotonic() - last[0] > 2:
            update_progress_artifact(artifact, progress=done)
            last[0] = time.monotonic()

    result = mover_local.run(objects_dir, out_dir, image, cfg.image(image).layout, mover.jobs, on_line)
    update_progress_artifact(artifact, progress=100.0)
    return {
        "qcow2": str(result.qcow2),
        "data_image": str(result.data_image),
        "report": str(out_dir / "report.json"),
        "qcow2_bytes": result.qcow2.stat().st_size,
        "data_image_bytes": result.data_image.stat().st_size,
        "volumes": result.report.get("volumes", []),
        "totals": result.report.get("totals", {}),
    }
