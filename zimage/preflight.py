"""Preflight results (pure): what a preflight covers, the checks it reports, the free-space
estimate and the report's markdown. The tasks and the flow in tasks/ and flows/ gather the facts."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from zimage.config import Component, Config
from zimage.findings import Finding, findings_markdown
from zimage.sizing import human

# gzip of emulated 3390 (CKD) volumes: track images of a typical system volume compress to about a
# third; unused tracks to almost nothing. An assumption, stated in the report, not a measurement.
CKD_COMPRESSION_RATIO = 0.35
# One more generation of room: an extraction's new generation is complete and verified before the
# generation beyond the retention is deleted.
HEADROOM_GENERATIONS = 1


Status = Literal["ok", "warning", "error"]
_RANK: dict[Status, int] = {"ok": 0, "warning": 1, "error": 2}


class Check(BaseModel):
    """One preflight check: what was checked, where, its status and what was found."""

    model_config = ConfigDict(frozen=True)

    name: str
    target: str
    status: Status
    messages: list[str]


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default="ok")


class SourceReport(BaseModel):
    system: str
    checks: list[Check]
    findings: list[Finding] | None  # None: no member could be read, so nothing was checked


class StorageReport(BaseModel):
    check: Check
    root: str
    free_bytes: int | None  # None when the staging directory could not be checked


def reach_check_name(system: str) -> str:
    return f"source {system}: reachable"


def parmlib_check_name(system: str) -> str:
    return f"source {system}: parmlib symbols"


def storage_check_name() -> str:
    return "storage: reachable and writable"


def cos_check_name() -> str:
    return "cos: bucket reachable and writable"


def vpc_check_name() -> str:
    return "vpc: API key, mover image, image import"


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
    findings: dict[str, list[Finding] | None]  # by system; None where no member was read
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
        if findings is None:  # a count of findings here would contradict the table's "not checked"
            lines += [f"## IEASYM and TCP/IP checks: {system}", "",
                      f"Not checked: no member was read (see `{parmlib_check_name(system)}` above).", ""]
        else:
            lines.append(findings_markdown(findings, title=f"IEASYM and TCP/IP checks: {system}"))
    return "\n".join(lines)


def failure_message(report: PreflightReport) -> str:
    """Every failed check, then every error finding (FILE:LINE: error: message)."""
    lines = [f"preflight of {report.scope.label}: {len(report.errors())} check(s) failed:"]
    lines += [f"  {c.name} ({c.target}): {'; '.join(c.messages)}" for c in report.errors()]
    lines += [f"  {f.text()}" for items in report.findings.values() for f in items or [] if f.severity == "error"]
    return "\n".join(lines)


