"""Run the data mover on this machine (mover mode `local`): the same program the VSI runs, on an
object directory, as a child process whose progress lines are passed on as they come."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datamover

_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)%")


def percent_of(line: str) -> float | None:
    """The share done that a data mover progress line reports ("... 42.0% ..."), if it has one."""
    match = _PERCENT.search(line) if line.startswith("datamover:") else None
    return min(100.0, float(match.group(1))) if match else None


class LocalMoverError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalMoverResult:
    qcow2: Path
    data_image: Path
    report: dict[str, Any]


def run(
    objects_dir: Path,
    out_dir: Path,
    image: str,
    layout: str,
    jobs: int | None = None,
    on_line: Callable[[str], None] | None = None,
) -> LocalMoverResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    # The package's own directory on the path: the mover imports nothing else of the project.
    package_root = str(Path(datamover.__file__).resolve().parent.parent)
    argv = [sys.executable, "-m", "datamover", "local", "--objects", str(objects_dir), "--out", str(out_dir),
            "--layout", layout, "--image", image]
    if jobs:
        argv += ["--jobs", str(jobs)]
    tail: list[str] = []
    with subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=package_root,
        env={**_clean_env(), "PYTHONPATH": package_root},
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            tail = [*tail, line][-20:]
            if on_line:
                on_line(line)
        code = proc.wait()
    report_path = out_dir / "report.json"
    report: dict[str, Any] = {}
    if report_path.exists():
        report = json.loads(report_path.read_text())
    if code != 0:
        detail = report.get("error") or "\n".join(tail[-5:])
        raise LocalMoverError(f"data mover failed (exit {code}): {detail}")
    result = LocalMoverResult(out_dir / f"{image}.qcow2", out_dir / f"{image}-data.img", report)
    for path in (result.qcow2, result.data_image):
        if not path.exists():
            raise LocalMoverError(f"data mover finished but {path} is missing")
    return result


def _clean_env() -> dict[str, str]:
    import os

    # Secrets of the orchestrator are not the mover's business.
    drop = ("KEY", "SECRET", "TOKEN", "PASSWORD")
    return {k: v for k, v in os.environ.items() if not any(d in k.upper() for d in drop)}
