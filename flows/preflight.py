"""Flow preflight: before anything is extracted or created, check what a run will rely on.

    zimage run preflight --config CONFIG [--image NAME | --system NAME]

For each source system in scope: SSH reachability with the host key verified, and the IEASYMxx /
TCP/IP PROFILE / TCPDATA members its parmlib names, read over SSH and checked for the symbols
Wazi aaS rewrites. For the storage server: reachability, a writable staging root, and its free
space against an estimate of the compressed size of the components in scope. Everything is
published as one markdown artifact; the flow fails, naming every error, when any check has one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from infra.configfile import load_config
from infra.parmlib import configured
from tasks.preflight import (
    RETRY_DELAY_SECONDS,
    Check,
    SourceReport,
    StorageReport,
    check_source,
    check_storage,
    location,
    parmlib_check_name,
    reach_check_name,
    storage_check_name,
    worst,
)
from zimage.config import Component, Config, Source
from zimage.findings import Finding, findings_markdown
from zimage.sizing import human

# gzip of emulated 3390 (CKD) volumes: track images of a typical system volume compress to about a
# third; unused tracks to almost nothing. An assumption, stated in the report, not a measurement.
CKD_COMPRESSION_RATIO = 0.35
# One more generation of room: an extraction's new generation is complete and verified before the
# generation beyond the retention is deleted.
HEADROOM_GENERATIONS = 1


class PreflightFailed(RuntimeError):
    pass


class Scope(BaseModel):
    """What a preflight covers: a description, the source systems and the components."""

    label: str  # "image zos25-dev", "system SYSZ25A", "all sources"
    key: str  # artifact key suffix: lowercase letters, digits, dashes
    systems: list[str]
    components: list[str]


class SpaceEstimate(BaseModel):
    volumes: int
    capacity_bytes: int  # the volumes' full (uncompressed) size
    compressed_bytes: int  # one generation, at the assumed ratio
    wanted_bytes: int  # with the headroom
    ratio: float = CKD_COMPRESSION_RATIO
    headroom_generations: int = HEADROOM_GENERATIONS


class PreflightReport(BaseModel):
    scope: Scope
    config: str
    checked_at: str
    status: str
    checks: list[Check]
    findings: dict[str, list[Finding]]  # by system
    estimate: SpaceEstimate

    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.status == "error"]


def artifact_key(name: str) -> str:
    """Prefect artifact keys hold lowercase letters, digits and dashes."""
    return "preflight-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "all")


def select(cfg: Config, image: str | None, system: str | None) -> Scope:
    """The sources and components a preflight covers; ValueError for an unknown or double choice."""
    if image and system:
        raise ValueError("give an image or a system, not both")
    try:
        if image:
            comps = cfg.image_components(cfg.image(image))
            systems = list(dict.fromkeys(c.source for c in comps))
            return Scope(label=f"image {image}", key=artifact_key(image), systems=systems,
                         components=[c.name for c in comps])
        if system:
            source = cfg.source(system)
            comps = [c for c in cfg.components if c.source == source.name]
            return Scope(label=f"system {source.name}", key=artifact_key(source.name), systems=[source.name],
                         components=[c.name for c in comps])
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    return Scope(label="all sources", key=artifact_key("all"), systems=[s.name for s in cfg.sources],
                 components=[c.name for c in cfg.components])


def estimate(components: list[Component]) -> SpaceEstimate:
    capacity = sum(c.size_bytes for c in components)
    compressed = int(capacity * CKD_COMPRESSION_RATIO)
    return SpaceEstimate(volumes=sum(len(c.volumes) for c in components), capacity_bytes=capacity,
                         compressed_bytes=compressed, wanted_bytes=compressed * (1 + HEADROOM_GENERATIONS))


def assumption(est: SpaceEstimate) -> str:
    return (f"estimated compressed size = volume capacity x {est.ratio} (an assumed gzip ratio for CKD "
            f"volumes; real ratios depend on how full the volumes are), plus {est.headroom_generations} "
            "generation of headroom because the old generation is deleted only after the new one verifies")


def space_check(storage: StorageReport | None, est: SpaceEstimate) -> Check:
    name = "storage: free space"
    sizes = (f"{est.volumes} volume(s), {human(est.capacity_bytes)} capacity, about "
             f"{human(est.compressed_bytes)} compressed; with headroom {human(est.wanted_bytes)}")
    if storage is None or storage.free_bytes is None:
        return Check(name=name, target="storage", status="warning",
                     messages=[f"not measured: the staging directory could not be checked (needs {sizes})"])
    free = storage.free_bytes
    found = f"{human(free)} free in {storage.root}; the components in scope need {sizes}"
    if free < est.compressed_bytes:
        status, verdict = "error", "not enough room even for one generation"
    elif free < est.wanted_bytes:
        status, verdict = "warning", "room for one generation but not for the headroom"
    else:
        status, verdict = "ok", "enough room"
    return Check(name=name, target=storage.root, status=status, messages=[f"{verdict}: {found}", assumption(est)])


def _failed(name: str, target: str, exc: BaseException) -> Check:
    return Check(name=name, target=target, status="error", messages=[str(exc) or type(exc).__name__])


def _source_outcome(source: Source, future: Any) -> SourceReport:
    try:
        return future.result()
    except Exception as exc:
        skipped = Check(name=parmlib_check_name(source.name), target=", ".join(configured(source.parmlib).values()),
                        status="warning", messages=[f"not checked: source {source.name} could not be reached"])
        reach = _failed(reach_check_name(source.name), location(source), exc)
        return SourceReport(system=source.name, checks=[reach, skipped], findings=[])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: PreflightReport) -> str:
    errors = len(report.errors())
    warnings = sum(1 for c in report.checks if c.status == "warning")
    lines = [
        f"# Preflight of {report.scope.label}: {report.status}", "",
        f"Config `{report.config}`, checked {report.checked_at}. "
        f"{len(report.checks)} check(s): {errors} error(s), {warnings} warning(s).", "",
        "| check | status | where | details |", "|---|---|---|---|",
    ]
    lines += [f"| {_cell(c.name)} | {c.status} | `{_cell(c.target)}` | {_cell('; '.join(c.messages))} |"
              for c in report.checks]
    lines += ["", f"Components in scope: {', '.join(report.scope.components) or 'none'}.", ""]
    for system, findings in report.findings.items():
        lines.append(findings_markdown(findings, title=f"IEASYM and TCP/IP checks: {system}"))
    return "\n".join(lines)


def failure_message(report: PreflightReport) -> str:
    """Every failed check, then every error finding (FILE:LINE: error: message)."""
    lines = [f"preflight of {report.scope.label}: {len(report.errors())} check(s) failed:"]
    lines += [f"  {c.name} ({c.target}): {'; '.join(c.messages)}" for c in report.errors()]
    lines += [f"  {f.text()}" for items in report.findings.values() for f in items if f.severity == "error"]
    return "\n".join(lines)


@flow(name="preflight", task_runner=ThreadPoolTaskRunner(max_workers=8))
def preflight(
    config: str,
    image: str | None = None,
    system: str | None = None,
    retry_delay_seconds: float = RETRY_DELAY_SECONDS,
) -> dict[str, Any]:
    """Check that source systems and the storage server are ready before a run.

    Reaches every source system in scope and the storage server over SSH (host keys verified),
    reads the IEASYMxx, TCP/IP PROFILE and TCPDATA members named in each source's parmlib and checks
    the symbols Wazi aaS rewrites, and compares the staging directory's free space with the
    estimated compressed size of the components in scope. Publishes a markdown artifact
    `preflight-<image or system>`; fails listing the errors when any check has one.

    Args:
        config: Path of the zimage YAML config on the machine running the flow.
        image: Check the sources and components of this image only.
        system: Check this source system (and its components) only. Neither: every source.
        retry_delay_seconds: Wait between the retries of a failed connection (2 retries).
    """
    log = get_run_logger()
    cfg = load_config(config)  # every config problem before any connection
    scope = select(cfg, image, system)
    log.info("preflight of %s: %d source(s), %d component(s)", scope.label, len(scope.systems), len(scope.components))
    source_task = check_source.with_options(retry_delay_seconds=retry_delay_seconds)
    storage_task = check_storage.with_options(retry_delay_seconds=retry_delay_seconds)
    storage_future = storage_task.submit(config)
    source_futures = {s: source_task.with_options(task_run_name=f"check-source-{s}").submit(config, s)
                      for s in scope.systems}
    sources = [_source_outcome(cfg.source(s), f) for s, f in source_futures.items()]
    try:
        storage: StorageReport | None = storage_future.result()
    except Exception as exc:
        storage = None
        storage_check = _failed(storage_check_name(), location(cfg.storage), exc)
    else:
        storage_check = storage.check
    est = estimate([cfg.component(n) for n in scope.components])
    checks = [c for s in sources for c in s.checks] + [storage_check, space_check(storage, est)]
    report = PreflightReport(
        scope=scope, config=config, checked_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        status=worst([c.status for c in checks]), checks=checks,
        findings={s.system: s.findings for s in sources}, estimate=est,
    )
    create_markdown_artifact(markdown=markdown(report), key=scope.key,
                             description=f"Preflight of {scope.label}: {report.status}")
    for check in checks:
        level = {"ok": log.info, "warning": log.warning, "error": log.error}[check.status]
        level("%s: %s: %s", check.name, check.status, "; ".join(check.messages))
    if report.errors():
        raise PreflightFailed(failure_message(report))
    return report.model_dump(mode="json")
