"""Helpers shared by the CLI's commands."""

from __future__ import annotations

from pathlib import Path

import typer

from infra.configfile import load_config
from zimage.config import Config, ConfigError

EXIT_INVALID = 2


def fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    typer.echo(f"zimage: {message}", err=True)
    return typer.Exit(code)


def config_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_INVALID) from None
