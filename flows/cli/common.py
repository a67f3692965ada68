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


def config_or_exit(path: Path, *, image: str | None = None, component: str | None = None) -> Config:
    """The checked config, and the named image/component in it; exit 2 otherwise."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    try:
        if image is not None:
            cfg.image(image)
        if component is not None:
            cfg.component(component)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    return cfg
