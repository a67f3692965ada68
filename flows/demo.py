"""Flow demo: the whole pipeline on one machine, no z/OS and no cloud (DESIGN.md §12).

A simulated source (real 3390 volumes from Hercules `dasdinit`, or zimage's own CKD writer), a
local staging directory, a local object store and the data mover run locally; the flows are the
production ones: preflight → extract-component (each component) → deploy-image (build, stage,
convert, publish locally).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.deploy_image import deploy_image
from flows.extract_component import extract_component
from flows.preflight import preflight
from tasks.artifacts import collect_subflow_artifacts
from tasks.demo import prepare_demo
from zimage.sizing import human


@flow(name="demo", flow_run_name="demo")
def demo(workdir: str = "zimage-demo", volumes: int = 2, cylinders: int = 30) -> dict[str, Any]:
    """Run the embedded end-to-end demo.

    Args:
        workdir: directory for the simulated source, staging, object store and outputs
            (created if missing; a non-empty directory that is not a previous demo is refused).
        volumes: number of data volumes besides the two system residence volumes (1-20).
        cylinders: size of each 3390 volume in cylinders (about 0.85 MB each).
    """
    log = get_run_logger()
    started = time.monotonic()
    prepared = prepare_demo(workdir, volumes, cylinders)
    config, image = prepared["config"], prepared["image"]
    preflight(config, image=image, ipl_check=False)  # the demo's volumes hold no z/OS system to IPL
    extracted = [extract_component(config, name) for name in prepared["components"]]
    deployed = deploy_image(config, image)
    seconds = time.monotonic() - started
    total = sum(e["bytes"] for e in extracted)
    gz = sum(e["gz_bytes"] for e in extracted)
    out = Path(deployed["qcow2"]).parent
    summary = {
        "workdir": prepared["workdir"],
        "config": config,
        "image": image,
        "volumes": sum(len(e["volumes"]) for e in extracted),
        "bytes": total,
        "gz_bytes": gz,
        "seconds": round(seconds, 1),
        "qcow2": deployed["qcow2"],
        "data_image": deployed["data_image"],
        "report": deployed["report"],
    }
    create_markdown_artifact(
        key="demo-summary",
        markdown=(
            f"# zimage demo: image {image}\n\n"
            "| result | value |\n|---|---|\n"
            f"| volumes | {summary['volumes']} ({human(total)}, {human(gz)} compressed) |\n"
            f"| generations | {', '.join(e['component'] + ' ' + e['generation'] for e in extracted)} |\n"
            f"| qcow2 | `{deployed['qcow2']}` |\n"
            f"| data volume image | `{deployed['data_image']}` |\n"
            f"| report | `{deployed['report']}` |\n"
            f"| took | {seconds:.1f} s ({human(total / seconds if seconds else 0)}/s) |\n\n"
            f"The config the demo wrote is `{config}`: try `zimage plan {config} --image {image}`.\n"
        ),
        description="What the demo did",
    )
    collect_subflow_artifacts()  # the subflows' summaries and tables, in this run's Artifacts tab too
    log.info("demo finished in %.1f s: %s of volumes; outputs in %s", seconds, human(total), out)
    return summary
