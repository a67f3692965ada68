"""`zimage ieasym check|render`: the IEASYMxx / TCP/IP symbol checks on member files, or on the
members a source system's parmlib names (read over SSH, `--config F --system NAME`).

Findings go to stdout; usage and read errors to stderr. Exit codes: 0 no error (warnings
allowed), 1 errors (or a refused render), 2 an input cannot be read, the config is invalid or an
option is malformed. Prefect is never imported here, so the command starts fast.
"""

from __future__ import annotations

import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from zimage.ebcdic import decode_bytes, detect_encoding, encode_text
from zimage.findings import EXIT_ERRORS, EXIT_UNREADABLE, exit_code, findings_json, findings_text
from zimage.ieasym import RenderError
from zimage.symbols import Member, check_members, render_symbols

app = typer.Typer(
    help="Check and render the IEASYMxx symbols Wazi aaS rewrites "
    "(HOMEIPADDRESS1, DEFAULTROUTEADDR, NAMESERVERADDR1) and their use in TCP/IP PROFILE and TCPDATA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def _fail(message: str, code: int = EXIT_UNREADABLE) -> typer.Exit:
    typer.echo(f"zimage ieasym: {message}", err=True)
    return typer.Exit(code)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(f"{path}: cannot read: {exc.strerror or exc}") from None


def _member(path: Path | None) -> Member | None:
    return None if path is None else Member(name=str(path), text=_read(path))


def _source_members(config: Path, system: str) -> list[Member | None]:
    """IEASYMxx, PROFILE and TCPDATA as the source's parmlib names them, read over one connection;
    FILE in the findings is the data set member (or path) as configured."""
    from infra.configfile import load_config
    from infra.parmlib import KINDS, MemberReader, ParmlibError, configured, missing
    from zimage.config import ConfigError

    try:
        source = load_config(config).source(system)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_UNREADABLE) from None
    except KeyError as exc:
        raise _fail(f"{config}: {exc.args[0]}") from None
    names = configured(source.parmlib)
    if "ieasym" not in names:
        raise _fail(f"{config}: source {source.name} has no parmlib.ieasym: nothing to check")
    for key in missing(source.parmlib):
        typer.echo(f"zimage ieasym: note: source {source.name} has no parmlib.{key}: the {KINDS[key]} check "
                   "is skipped", err=True)
    try:
        with MemberReader(source) as reader:
            members = {key: Member(name=member, text=reader.read(member)) for key, member in names.items()}
    except ParmlibError as exc:
        raise _fail(str(exc)) from None
    return [members.get(key) for key in KINDS]


@app.command()
def check(
    ieasym: Annotated[Path | None, typer.Option("--ieasym", help="IEASYMxx member file")] = None,
    profile: Annotated[Path | None, typer.Option("--profile", help="TCP/IP PROFILE member file")] = None,
    tcpdata: Annotated[Path | None, typer.Option("--tcpdata", help="TCPIP.DATA member file")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="zimage config: read the members of --system over SSH")
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", help="Source system whose parmlib members are read (with --config)")
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="text or json")] = OutputFormat.text,
) -> None:
    """Report FILE:LINE: error|warning: message for each problem; exit 1 when any is an error.

    Give the member files (--ieasym, optionally --profile and --tcpdata), or --config and --system
    to read the members the source's parmlib names from the system itself.
    """
    if config is not None or system is not None:
        if config is None or system is None:
            raise _fail("--config and --system go together")
        if ieasym or profile or tcpdata:
            raise _fail("give member files (--ieasym ...) or --config/--system, not both")
        members = _source_members(config, system)
    elif ieasym is None:
        raise _fail("give --ieasym FILE, or --config FILE --system NAME")
    else:
        members = [_member(ieasym), _member(profile), _member(tcpdata)]
    assert members[0] is not None
    findings = check_members(members[0], members[1], members[2])
    render = findings_json if output_format is OutputFormat.json else findings_text
    typer.echo(render(findings), nl=False)
    raise typer.Exit(exit_code(findings))


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """NAME=VALUE (NAME may be written &NAME or &NAME.) -> {NAME: VALUE}; bad syntax exits 2."""
    values: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise _fail(f"--set {item!r}: expected NAME=VALUE, e.g. HOMEIPADDRESS1=172.26.1.2")
        values[name.strip()] = value
    return values


def _write_atomically(path: Path, data: bytes) -> None:
    # Write beside the target and rename, so a failed write never leaves half a member.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
def render(
    ieasym: Annotated[Path, typer.Option("--ieasym", help="IEASYMxx member file")],
    assignments: Annotated[
        list[str], typer.Option("--set", help="NAME=VALUE to set (repeatable), e.g. HOMEIPADDRESS1=172.26.1.2")
    ],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write; stdout without it")] = None,
) -> None:
    """Set symbol values in IEASYMxx, keeping every other byte; missing SYMDEFs are inserted.

    The output keeps the input's encoding (EBCDIC or ASCII) and its line ends or fixed records.
    """
    values = parse_assignments(assignments)
    raw = _read(ieasym)
    encoding = detect_encoding(raw)
    try:
        rendered = encode_text(render_symbols(decode_bytes(raw, encoding), values), encoding)
    except RenderError as exc:
        for problem in exc.problems:
            typer.echo(f"zimage ieasym: {ieasym}: {problem}", err=True)
        raise typer.Exit(EXIT_ERRORS) from None
    except ValueError as exc:  # a value with a character the member's code page lacks
        raise _fail(f"{ieasym}: {exc}", EXIT_ERRORS) from None
    if output is None:
        sys.stdout.buffer.write(rendered)
        sys.stdout.buffer.flush()
        return
    try:
        _write_atomically(output, rendered)
    except OSError as exc:
        raise _fail(f"{output}: cannot write: {exc.strerror or exc}") from None
    typer.echo(f"wrote {output} ({len(rendered)} bytes, {encoding})", err=True)
