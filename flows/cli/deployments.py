"""`zimage deployments write CONFIG`: the scheduled refresh deployments of prefect.yaml, from the
config's `sources[].refresh`. The rendering is zimage.deployments'; here the file is read and written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import config_or_exit, fail
from zimage.deployments import DeploymentsFileError, refresh_deployments, render_block, update_prefect_yaml

app = typer.Typer(help="Prefect deployments generated from the config.", no_args_is_help=True)
EXIT_STALE = 1


def _write(path: Path, text: str) -> None:
    # Written beside and renamed, so a failure never leaves half a prefect.yaml.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@app.command("write")
def write(
    config: Annotated[Path, typer.Argument(help="Path of the zimage YAML config", show_default=False)],
    prefect_yaml: Annotated[Path, typer.Option("--prefect-yaml", help="prefect.yaml to update or create")] = Path(
        "prefect.yaml"
    ),
    config_path: Annotated[
        str | None,
        typer.Option("--config-path", help="The config's path as the worker sees it; default: CONFIG as given"),
    ] = None,
    pool: Annotated[str, typer.Option("--pool", help="Work pool of the deployments")] = "zimage",
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when the file is not what CONFIG gives")
    ] = False,
) -> None:
    """Write one refresh-SYSTEM deployment per source with a `refresh:` schedule into prefect.yaml.

    Only the block between the refresh markers is replaced; the rest of the file stays as it was.
    Deploy the result with `prefect --no-prompt deploy --all`.
    """
    cfg = config_or_exit(config)
    deployments = refresh_deployments(cfg, config_path or str(config), pool=pool)
    try:
        current = prefect_yaml.read_text(encoding="utf-8") if prefect_yaml.exists() else None
    except OSError as exc:
        raise fail(f"{prefect_yaml}: cannot read: {exc.strerror}") from None
    try:
        updated = update_prefect_yaml(current, render_block(deployments))
    except DeploymentsFileError as exc:
        raise fail(f"{prefect_yaml}: {exc}") from None
    summary = (
        ", ".join(
            f"{d['name']} ({len(d['schedules'])} schedule(s) in {d['schedules'][0]['timezone']}"
            + ("" if d["schedules"][0]["active"] else ", paused")
            + ")"
            for d in deployments
        )
        or "no source has a refresh: schedule"
    )
    if check:
        if updated != current:
            raise fail(f"{prefect_yaml} is not what {config} gives ({summary}): run without --check", EXIT_STALE)
        typer.echo(f"{prefect_yaml} is up to date: {summary}")
        return
    if updated == current:
        typer.echo(f"{prefect_yaml} unchanged: {summary}")
        return
    try:
        _write(prefect_yaml, updated)
    except OSError as exc:
        raise fail(f"{prefect_yaml}: cannot write: {exc.strerror}") from None
    typer.echo(f"wrote {prefect_yaml}: {summary}; deploy with `prefect --no-prompt deploy --all`")
