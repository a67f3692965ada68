"""Findings: text lines, JSON, markdown and exit codes."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from zimage.findings import Finding, exit_code, findings_json, findings_markdown, findings_text, sort_findings

ERROR = Finding(file="SYS1.PARMLIB(IEASYM00)", line=3, severity="error", message="&X is not defined", symbol="X")
WARNING = Finding(file="PROFILE", line=7, severity="warning", message="literal | pipe")


def test_text_lines() -> None:
    assert findings_text([ERROR, WARNING]) == (
        "SYS1.PARMLIB(IEASYM00):3: error: &X is not defined\nPROFILE:7: warning: literal | pipe\n"
    )
    assert findings_text([]) == ""


def test_json_document() -> None:
    document = json.loads(findings_json([ERROR, WARNING]))
    assert document["errors"] == 1 and document["warnings"] == 1
    assert document["findings"][0] == {
        "file": "SYS1.PARMLIB(IEASYM00)", "line": 3, "severity": "error", "message": "&X is not defined", "symbol": "X"
    }
    assert [Finding.model_validate(f) for f in document["findings"]] == [ERROR, WARNING]


def test_markdown_escapes_pipes() -> None:
    text = findings_markdown([ERROR, WARNING], title="Preflight SYSZ25A")
    assert text.startswith("## Preflight SYSZ25A\n\n1 error(s), 1 warning(s).\n")
    assert "| warning | `PROFILE:7` | literal \\| pipe |" in text
    assert "| severity | location | message |" not in findings_markdown([])


def test_exit_codes() -> None:
    assert exit_code([]) == 0
    assert exit_code([WARNING]) == 0
    assert exit_code([WARNING, ERROR]) == 1


def test_sort_keeps_file_order_and_puts_errors_first() -> None:
    a1w = Finding(file="A", line=1, severity="warning", message="w")
    a1e = Finding(file="A", line=1, severity="error", message="e")
    b0 = Finding(file="B", line=1, severity="error", message="b")
    assert sort_findings([b0, a1w, a1e]) == [b0, a1e, a1w]


def test_invalid_findings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Finding(file="F", line=0, severity="error", message="m")
    with pytest.raises(ValidationError):
        Finding(file="F", line=1, severity="info", message="m")  # type: ignore[arg-type]
