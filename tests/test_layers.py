"""Imports go one way: flows -> tasks -> infra -> zimage; datamover imports nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "zimage": {"zimage"},
    "infra": {"zimage", "infra", "datamover"},  # infra packs the datamover zipapp into user data
    "tasks": {"zimage", "infra", "tasks"},
    "flows": {"zimage", "infra", "tasks", "flows", "datamover"},
    "datamover": {"datamover"},
}
PROJECT = set(ALLOWED)
NO_IO_IN_CORE = {"subprocess", "socket", "paramiko", "ibm_boto3", "ibm_vpc", "httpx", "requests", "prefect"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layering(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports(path) & PROJECT:
            if name not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
        if package == "zimage":
            bad += [f"{path.relative_to(ROOT)} imports {n} (I/O in the core)" for n in imports(path) & NO_IO_IN_CORE]
    assert not bad, "\n".join(bad)
