"""`zimage volume ls|cat`: the data sets of a CKD volume image and a member's text (DESIGN.md §16).

FILE may be plain or gzip'd; a gzip'd one is inflated only as far as needed. Exit 0, or 2 when the
file, the data set or the member cannot be read (the message names which and why). Prefect is
never imported here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from datamover.dataset import list_datasets, read_dataset
from datamover.errors import MoverError
from flows.cli.common import fail
from zimage.ebcdic import ibm1047_decode

app = typer.Typer(help="Read the data sets of a CKD volume image (plain or gzip'd).", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="Volume image file (CKD_P370, plain or .gz)", show_default=False)]


@app.command("ls")
def ls(file: FileArg) -> None:
    """List the data sets: name, DSORG, RECFM, LRECL, BLKSIZE, tracks and extents (cyl.head-cyl.head)."""
    try:
        volser, datasets = list_datasets(str(file))
    except (MoverError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"VOLSER {volser}: {len(datasets)} data set(s)")
    typer.echo(f"{'DSNAME':<44} {'DSORG':<5} {'RECFM':<5} {'LRECL':>5} {'BLKSIZE':>7} {'TRACKS':>6}  EXTENTS")
    for d in datasets:
        typer.echo(
            f"{d['name']:<44} {d['dsorg']:<5} {d['recfm']:<5} {d['lrecl']:>5} {d['blksize']:>7} "
            f"{d['tracks']:>6}  {' '.join(d['extents'])}"
        )


@app.command("cat")
def cat(
    file: FileArg,
    dataset: Annotated[str, typer.Argument(help="DSN(MEMBER), or DSN of a sequential data set", show_default=False)],
    raw: Annotated[bool, typer.Option("--raw", help="Write the records as stored (EBCDIC, no line ends)")] = False,
) -> None:
    """Print a member (or sequential data set) as text: one line per record, IBM-1047 decoded,
    trailing blanks removed."""
    try:
        records = read_dataset(str(file), dataset)
    except (MoverError, OSError) as exc:
        raise fail(str(exc)) from None
    if raw:
        sys.stdout.buffer.write(b"".join(records))
        sys.stdout.buffer.flush()
        return
    for record in records:
        typer.echo(ibm1047_decode(record).rstrip(" "))
