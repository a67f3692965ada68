"""`zimage volume ls|cat`: the data sets of a CKD volume image and a member's text (DESIGN.md §16).

FILE may be plain or gzip'd; a gzip'd one is inflated only as far as needed. Exit 0, or 2 when the
file, the data set or the member cannot be read (the message names which and why). Prefect is
never imported here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from datamover.dataset import list_datasets, read_dataset
from datamover.errors import MoverError
from flows.cli.common import fail
from zimage.ebcdic import ibm1047_decode

app = typer.Typer(help="Read the data sets of a CKD volume image (plain or gzip'd).", no_args_is_help=True)


@contextmanager
def _reading(file: Path) -> Iterator[Callable[[int], None]]:
    """A bar on stderr (a terminal only) for how far into a gzip'd file the reading is: a VTOC at the
    far end of a large volume is a pass over all of it."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _offset: None
        return
    progress = Progress(
        TextColumn(file.name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True
    )
    total = file.stat().st_size if file.is_file() else None
    bar = progress.add_task("read", total=total)
    with progress:
        yield lambda offset: progress.update(bar, completed=offset)


FileArg = Annotated[Path, typer.Argument(help="Volume image file (CKD_P370, plain or .gz)", show_default=False)]


@app.command("ls")
def ls(file: FileArg) -> None:
    """List the data sets: name, DSORG, RECFM, LRECL, BLKSIZE, tracks and extents (cyl.head-cyl.head)."""
    try:
        with _reading(file) as on_read:
            volser, datasets = list_datasets(str(file), on_read)
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
        with _reading(file) as on_read:
            records = read_dataset(str(file), dataset, on_read)
    except (MoverError, OSError) as exc:
        raise fail(str(exc)) from None
    if raw:
        sys.stdout.buffer.write(b"".join(records))
        sys.stdout.buffer.flush()
        return
    for record in records:
        typer.echo(ibm1047_decode(record).rstrip(" "))
