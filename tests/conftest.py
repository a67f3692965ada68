"""Shared test set-up: every module under tests/support is a pytest plugin of fixtures."""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.support.{p.stem}"
    for p in (Path(__file__).parent / "support").glob("*.py")
    if p.stem != "__init__"
)
