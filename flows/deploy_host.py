"""Flow deploy-host: install an image's volumes on an emulator host (DESIGN.md §15).

read manifests → build (pure) → check the staged files → probe the host (read only) → plan: per
volume transfer or reuse, free space, sets kept and removed (a host without room stops here, nothing
written) → deploy the set on the host and switch `current` → summary. The network symbols are
written into the deployed copies of the IEASYMxx members the IPL chain leads to; when they cannot be,
the run says why in its summary and ends in a Completed state named accordingly.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import State

from flows.build_image import artifact_key
from flows.outcome import deploy_outcome
from infra.configfile import load_config
from tasks.build import build, check_staged, read_manifests
from tasks.host import HostSpaceError, choose_path, deploy_set, probe_host
from tasks.ipl import find_ieasym
from zimage import host_set
from zimage.sizing import human


@flow(name="deploy-host", flow_run_name="deploy-{image}-to-{host}")
def deploy_host(config: str, image: str, host: str, generations: dict[str, str] | None = None) -> State[Any]:
    """Deploy IMAGE to the emulator host HOST: a new verified set beside the current one, then `current`
    switched to it; volumes unchanged since the current set are copied on the host instead of sent.

    Args:
        config: path of the zimage YAML config on the worker.
        image: name of the image in the config.
        host: name of the host in the config (hosts[].name).
        generations: component name -> generation (YYYY-MM-DD_HH_MM_SS); default: the newest verified one.
    """
    started = time.monotonic()
    cfg = load_config(config)
    target = cfg.host(host)
    logger = get_run_logger()
    manifests = read_manifests(config, image, generations)
    built = build(config, image, manifests)
    check_staged(config, built)
    symbols = find_ieasym(config, image, manifests, host)
    state = probe_host(config, host, image)
    path = choose_path(cfg, target, state)
    devmap_text = host_set.host_devmap(target, cfg.image(image), built)
    document = host_set.new_set(target, cfg.image(image), built, devmap_text, symbols.status)
    plan = host_set.plan(target, built, document, state)
    logger.info("plan:\n%s", plan.text())
    if not plan.fits:
        raise HostSpaceError(
            f"host {host}: {human(plan.free_needed)} needed in {target.root}, {human(plan.free_bytes)} available; "
            "nothing was written"
        )
    result = deploy_set(config, host, image, built, document, plan, path, state.local_address, symbols)
    seconds = time.monotonic() - started
    summary = _summary(host, image, target.root, document, result, seconds)
    summary["network_symbols"] = symbols.status
    columns = ("volser", "origin", "bytes", "moved", "deployed_sha256")
    create_table_artifact(
        key=artifact_key("host-volumes", f"{host}-{image}"),
        table=[{c: v.get(c) for c in columns} for v in result["volumes"]],
        description=f"Volumes of set {document.set} on host {host}",
    )
    create_markdown_artifact(key=artifact_key("deploy-host", f"{host}-{image}"), markdown=summary["markdown"])
    return deploy_outcome(summary, symbols, f"set {document.set} current")


def _summary(
    host: str, image: str, root: str, document: host_set.DeployedSet, result: dict[str, Any], seconds: float
) -> dict[str, Any]:
    moved, reused = result["moved_bytes"], result["reused_bytes"]
    rate = f"{human(moved / seconds)}/s" if seconds > 0 and moved else "-"
    transferred = [v["volser"] for v in result["volumes"] if v["origin"] == "transferred"]
    markdown = (
        f"# Image {image} on host {host}\n\n"
        f"- set: `{document.set}`, `current` → `{root}/{image}/sets/{document.set}`"
        + ("" if result["switched"] else " (already current)")
        + f"\n- data path: {result['data_path']}\n"
        f"- moved: {human(moved)} compressed ({len(transferred)} volumes: {', '.join(transferred) or 'none'}), "
        f"{rate}; reused on the host: {human(reused)}\n"
        f"- sets removed: {', '.join(result['removed']) or 'none'}"
        + (f"; left because their files are open: {', '.join(result['busy'])}" if result["busy"] else "")
        + f"\n- free space left: {human(result['free_bytes'])}\n"
        f"- took {seconds:.1f} s\n"
        f"- **network symbols {document.network_symbols}**\n"
    )
    return {
        "image": image, "host": host, "set": document.set, "switched": result["switched"],
        "data_path": result["data_path"], "moved_bytes": moved, "reused_bytes": reused,
        "volumes": result["volumes"], "removed": result["removed"], "busy": result["busy"],
        "network_symbols": document.network_symbols, "seconds": round(seconds, 1), "markdown": markdown,
    }  # fmt: skip
