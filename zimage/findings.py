"""Findings of the member checks: ``FILE:LINE: error|warning: message``, JSON and markdown."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning"]

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_UNREADABLE = 2


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    line: int = Field(ge=1)
    severity: Severity
    message: str
    symbol: str | None = None  # the system symbol concerned, without '&' and '.'

    def text(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Stable order for output: by file as given, then line; errors before warnings on a line."""
    items = list(findings)
    file_order = {f: i for i, f in reversed(list(enumerate(x.file for x in items)))}
    return sorted(items, key=lambda f: (file_order[f.file], f.line, f.severity != "error"))


def count(findings: Iterable[Finding], severity: Severity) -> int:
    return sum(1 for f in findings if f.severity == severity)


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when nothing is an error (warnings allowed), 1 otherwise."""
    return EXIT_ERRORS if count(findings, "error") else EXIT_OK


def findings_text(findings: Iterable[Finding]) -> str:
    lines = [f.text() for f in findings]
    return "".join(line + "\n" for line in lines)


def findings_json(findings: Iterable[Finding]) -> str:
    items = list(findings)
    document = {
        "findings": [f.model_dump() for f in items],
        "errors": count(items, "error"),
        "warnings": count(items, "warning"),
    }
    return json.dumps(document, indent=2) + "\n"


def _cell(text: str) -> str:
    # A pipe or a line break would end the table cell early.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def findings_markdown(findings: Iterable[Finding], title: str = "IEASYM and TCP/IP checks") -> str:
    items = list(findings)
    errors, warnings = count(items, "error"), count(items, "warning")
    out = [f"## {title}", "", f"{errors} error(s), {warnings} warning(s).", ""]
    if items:
        out += ["| severity | location | message |", "|---|---|---|"]
        out += [f"| {f.severity} | `{_cell(f.file)}:{f.line}` | {_cell(f.message)} |" for f in items]
        out.append("")
    return "\n".join(out) + "\n"
