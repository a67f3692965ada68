"""The `zimage` command line (DESIGN.md §11).

Commands that only read files (validate, plan, ieasym, import-terraform) never import Prefect,
so they start fast; `run` and `demo` load the flows when called.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from flows.cli.common import config_or_exit, fail
from zimage.terraform import TerraformError, import_variables

app = typer.Typer(
    name="zimage",
    help="Turn the volumes of a z/OS system into an IBM Cloud custom image and data snapshot for Wazi aaS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="Path of the zimage YAML config", show_default=False)]


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config file against every rule; exit 2 listing each problem with its field path."""
    cfg = config_or_exit(config)
    volumes = sum(len(c.volumes) for c in cfg.components)
    typer.echo(
        f"{config}: valid: {len(cfg.sources)} source(s), {len(cfg.components)} component(s) "
        f"with {volumes} volume(s), {len(cfg.images)} image(s)"
    )


@app.command("import-terraform")
def import_terraform(
    paths: Annotated[
        list[Path], typer.Argument(help="variables.tf first, then *.tfvars files (later files win)")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Config to write or update")],
) -> None:
    """Read the existing builder's variables.tf and *.tfvars into a zimage config.

    Writes the `target` section and an image stub. When OUTPUT exists, its `target` is replaced
    and the other sections are kept. Every variable with a zimage equivalent is carried; each
    other one is listed with the reason. The API key is never copied: the config names the
    environment variable IBMCLOUD_API_KEY instead.
    """
    files = []
    for path in paths:
        try:
            files.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise fail(f"{path}: cannot read: {exc.strerror}") from None
    try:
        imported = import_variables(files)
    except TerraformError as exc:
        raise fail(str(exc)) from None
    document: dict = {}
    if output.exists():
        try:
            document = yaml.safe_load(output.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise fail(f"{output}: cannot read the existing config: {exc}") from None
        if not isinstance(document, dict):
            raise fail(f"{output}: the existing file is not a config mapping")
    document["target"] = imported.target
    if imported.image:
        images = document.setdefault("images", [])
        if not any(isinstance(i, dict) and i.get("name") == imported.image["name"] for i in images):
            images.append(
                {**imported.image, "components": [], "ipl": {"device": "0000", "loadparm": ""}}
            )
            imported.notes.append(
                f"image {imported.image['name']!r} is a stub: fill in components and ipl (device, loadparm)"
            )
    header = "# Written by zimage import-terraform. Secrets are referenced by environment variable only.\n"
    output.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    for note in imported.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {output}; run `zimage validate {output}` once storage, sources and components are filled in")


@app.command()
def plan(
    config: ConfigArg,
    image: Annotated[str, typer.Option("--image", help="Name of the image in the config")],
    show_user_data: Annotated[
        bool, typer.Option("--show-user-data", help="Print the cloud-init user data as it would be sent")
    ] = False,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Plan a deploy-host to this host instead: reads storage and host, writes nothing"),
    ] = None,
) -> None:
    """Show what a deploy of IMAGE would create and upload. No side effects, no network.

    With --host: per volume transfer or reuse, bytes, free space needed and available, sets kept and
    removed; this reads the storage server and the host (no side effects)."""
    from zimage.plan import plan as make_plan

    cfg = config_or_exit(config, image=image)
    if host is not None:
        from flows.cli.run import host_plan

        host_plan(config, cfg, image, host)
        return
    from infra.cloudinit import placeholder_user_data

    user_data = placeholder_user_data(cfg, image)
    typer.echo(make_plan(cfg, image, user_data_bytes=len(user_data.encode())).text(), nl=False)
    if show_user_data:
        typer.echo("\n--- user data ---")
        typer.echo(user_data)


def _register_subcommands() -> None:
    from flows.cli import deployments, ieasym, ipl, run, volume

    app.add_typer(ieasym.app, name="ieasym")
    app.add_typer(deployments.app, name="deployments")
    app.add_typer(volume.app, name="volume")
    app.add_typer(ipl.app, name="ipl")
    app.add_typer(run.app, name="run")
    app.command("demo")(run.demo)


_register_subcommands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
