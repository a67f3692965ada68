"""The IPL-chain check's report (pure): what was read where, the chain as resolved, the findings;
its exit code (DESIGN.md §11), its markdown, and its line in a preflight report."""

from __future__ import annotations

from pydantic import BaseModel

from zimage.findings import EXIT_UNREADABLE, Finding, count, exit_code, findings_markdown
from zimage.preflight import Check, Status


class VolumeRead(BaseModel):
    volser: str
    file_size: int
    read_bytes: int
    seconds: float


class IplReport(BaseModel):
    image: str
    where: str  # where the volumes were read
    generations: dict[str, str]  # component -> generation checked
    findings: list[Finding]
    steps: list[str]
    unreadable: bool
    volumes: list[VolumeRead]

    def exit_code(self) -> int:
        return EXIT_UNREADABLE if self.unreadable else exit_code(self.findings)


def report_markdown(report: IplReport) -> str:
    errors, warnings = count(report.findings, "error"), count(report.findings, "warning")
    status = "unreadable" if report.unreadable else "error" if errors else "ok"
    lines = [
        f"# IPL chain of {report.image}: {status}",
        "",
        "Generations: " + ", ".join(f"{c} {g}" for c, g in report.generations.items()) + f"; read on {report.where}.",
        "",
    ]
    lines += [f"- {step}" for step in report.steps] + [""]
    lines += ["| volume | file bytes | bytes read | share | seconds |", "|---|---:|---:|---:|---:|"]
    for v in report.volumes:
        share = f"{v.read_bytes / v.file_size:.1%}" if v.file_size else "-"
        lines.append(f"| {v.volser} | {v.file_size:,} | {v.read_bytes:,} | {share} | {v.seconds:.1f} |")
    lines += ["", findings_markdown(report.findings, title=f"Findings: {errors} error(s), {warnings} warning(s)")]
    return "\n".join(lines)


def ipl_check_name(image: str) -> str:
    return f"image {image}: IPL chain"


def preflight_check(report: IplReport) -> Check:
    """The IPL chain as one preflight check: its status from the findings, what it resolved and read."""
    errors, warnings = count(report.findings, "error"), count(report.findings, "warning")
    status: Status = "error" if report.unreadable or errors else "warning" if warnings else "ok"
    read = sum(v.read_bytes for v in report.volumes)
    size = sum(v.file_size for v in report.volumes)
    messages = [
        f"{errors} error(s), {warnings} warning(s) on {len(report.volumes)} staged volume(s) read on "
        f"{report.where}: {read:,} of {size:,} bytes read",
        *report.steps,
    ]
    target = ", ".join(f"{c} {g}" for c, g in report.generations.items())
    return Check(name=ipl_check_name(report.image), target=target, status=status, messages=messages)
