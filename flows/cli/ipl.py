"""`zimage ipl check`: the IPL chain of an image on its staged volumes (DESIGN.md §16), read on the
storage server. Findings `VOLSER:DSN(MEMBER):LINE: error|warning: message` on stdout, the resolved
chain and the bytes read on stderr; exit 0 (no error), 1 (errors), 2 (a volume, the storage server
or the config cannot be read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import config_or_exit, fail
from flows.cli.ieasym import OutputFormat
from flows.cli.run import ConfigOpt, GenerationOpt, ImageOpt, _generations
from zimage.findings import EXIT_UNREADABLE, findings_json, findings_text
from zimage.ipl_report import report_markdown

app = typer.Typer(help="Check the IPL chain of an image on its staged volumes.", no_args_is_help=True)


@app.command()
def check(
    config: ConfigOpt,
    image: ImageOpt,
    generation: GenerationOpt = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Also write the report (chain, bytes read, findings) here")
    ] = None,
) -> None:
    """LOADPARM -> IODF device -> LOADxx -> IODF, SYSCAT, PARMLIB, IEASYMxx, and the IEASYM / TCP/IP
    symbol checks on the members found on the volumes. Nothing leaves the storage server."""
    from infra import ssh
    from infra.staging_store import StagingError
    from infra.volume_lookup import VolumeLookupError, ipl_report
    from tasks.build import NoGeneration, read_manifests

    cfg = config_or_exit(config, image=image)
    wanted = _generations(generation)
    try:
        manifests = read_manifests.fn(str(config), image, wanted)
        report = ipl_report(cfg, image, manifests)
    except (NoGeneration, StagingError, VolumeLookupError, ssh.SshError, OSError) as exc:
        raise fail(str(exc), EXIT_UNREADABLE) from None
    for step in report.steps:
        typer.echo(f"zimage ipl: {step}", err=True)
    for v in report.volumes:
        typer.echo(
            f"zimage ipl: {v.volser}: read {v.read_bytes:,} of {v.file_size:,} bytes in {v.seconds:.1f} s", err=True
        )
    if markdown is not None:
        try:
            markdown.write_text(report_markdown(report), encoding="utf-8")
        except OSError as exc:
            raise fail(f"{markdown}: cannot write: {exc.strerror or exc}", EXIT_UNREADABLE) from None
    render = findings_json if output_format is OutputFormat.json else findings_text
    typer.echo(render(report.findings), nl=False)
    raise typer.Exit(report.exit_code())
