"""The scheduled refresh deployments of prefect.yaml, from `sources[].refresh` (pure).

One deployment `refresh-SYSTEM` per source system with a `refresh:` entry, one schedule per image
it names (each schedule gives the flow its `image`), concurrency limit 1 so runs of one system
never overlap. The deployments live between two marker lines in prefect.yaml; everything outside
them is left byte for byte as it was.
"""

from __future__ import annotations

from typing import Any

import yaml

from zimage.config import Config, Source

BEGIN = "  # >>> refresh deployments: written by `zimage deployments write CONFIG` from sources[].refresh"
END = "  # <<< refresh deployments"
ENTRYPOINT = "flows/refresh.py:refresh"


class DeploymentsFileError(ValueError):
    pass


def deployment_name(system: str) -> str:
    return f"refresh-{system}"


def _description(source: Source) -> str:
    plan = source.refresh
    assert plan is not None
    where = f"emulator host {plan.host}" if plan.host else "IBM Cloud (custom image and snapshot)"
    paused = "" if plan.active else " The schedule is deployed paused: resume it once the config is your own."
    return (
        f"Refresh of source system {source.name}: images {', '.join(plan.images)} at cron `{plan.cron}` in time "
        f"zone {plan.timezone}, deployed to {where}. Preflight, extract every component, build and deploy; "
        f"runs of {source.name} never overlap.{paused}"
    )


def refresh_deployments(
    cfg: Config, config_path: str, pool: str = "zimage", queue: str = "default"
) -> list[dict[str, Any]]:
    """The refresh deployments of every source with a schedule, in the config's order."""
    out = []
    for source in cfg.sources:
        plan = source.refresh
        if plan is None:
            continue
        fixed: dict[str, Any] = {"config": config_path, "create_instance": False}
        if plan.host:
            fixed["host"] = plan.host
        out.append(
            {
                "name": deployment_name(source.name),
                "description": _description(source),
                "entrypoint": ENTRYPOINT,
                "tags": ["zimage", "refresh", source.name],
                "parameters": fixed,
                "schedules": [
                    {
                        "cron": plan.cron,
                        "timezone": plan.timezone,
                        "active": plan.active,
                        "slug": f"{deployment_name(source.name)}-{image}".lower(),
                        "parameters": {"image": image},
                    }
                    for image in plan.images
                ],
                "concurrency_limit": 1,
                "work_pool": {"name": pool, "work_queue_name": queue},
            }
        )
    return out


def render_block(deployments: list[dict[str, Any]]) -> str:
    """The marker-delimited block of deployments, indented as items of `deployments:`."""
    lines = [BEGIN, "  # Edit sources[].refresh in the config and write again; changes made here are overwritten."]
    if deployments:
        text = yaml.safe_dump(deployments, sort_keys=False, width=100, default_flow_style=False)
        lines += ["  " + line if line else line for line in text.splitlines()]
    else:
        lines.append("  # (no source has a refresh: schedule)")
    lines.append(END)
    return "\n".join(lines) + "\n"


def _deployments_line(lines: list[str]) -> int:
    for n, line in enumerate(lines):
        if line.rstrip() == "deployments:":
            return n
    raise DeploymentsFileError("no top-level `deployments:` list to put the refresh deployments in")


def update_prefect_yaml(text: str | None, block: str, project: str = "zimage") -> str:
    """`text` (a prefect.yaml, or None for a new one) with its refresh block replaced by `block`;
    the first time, the block goes first under `deployments:`."""
    if text is None:
        return f"name: {project}\nprefect-version: 3.1.0\n\nbuild: null\npush: null\n\ndeployments:\n" + block
    lines = text.splitlines(keepends=True)
    begins = [n for n, line in enumerate(lines) if line.rstrip("\n") == BEGIN]
    ends = [n for n, line in enumerate(lines) if line.rstrip("\n") == END]
    if len(begins) > 1 or len(ends) > 1 or len(begins) != len(ends) or (begins and ends[0] < begins[0]):
        raise DeploymentsFileError(
            f"the markers of the refresh block are damaged: keep one {BEGIN.strip()!r} line "
            f"and one {END.strip()!r} line after it"
        )
    if begins:
        updated = "".join(lines[: begins[0]]) + block + "".join(lines[ends[0] + 1 :])
    else:
        at = _deployments_line([line.rstrip("\n") for line in lines]) + 1
        updated = "".join(lines[:at]) + block + "".join(lines[at:])
    _check_names(updated)
    return updated


def _check_names(text: str) -> None:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeploymentsFileError(f"the result would not be valid YAML: {exc}") from None
    names = [d.get("name") for d in (document or {}).get("deployments") or [] if isinstance(d, dict)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DeploymentsFileError(
            f"deployment(s) {', '.join(twice)} also appear outside the refresh block: remove those by hand first"
        )
