"""A terminal progress display for flows run from the CLI, fed by the flows' own log records.

Task runs named `extract-<VOLSER>` and `stage-<VOLSER>` advance their bars as they finish; the data
mover's progress lines ("… NN.N% …") drive the conversion bar. Prefect's console log lines are
quietened while the bars are shown (they still reach the Prefect API and the UI).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from infra.mover_local import percent_of

_FINISHED = "Finished in state Completed"


class _Watcher(logging.Handler):
    def __init__(self, progress: Progress, bars: dict[str, TaskID]):
        super().__init__(level=logging.INFO)
        self.progress = progress
        self.bars = bars
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        task_name = getattr(record, "task_run_name", None) or ""
        if message.startswith(_FINISHED) and task_name not in self.seen:
            for prefix, bar in self.bars.items():
                if task_name.startswith(f"{prefix}-"):
                    self.seen.add(task_name)
                    self.progress.advance(bar)
        elif (bar := self.bars.get("convert", self.bars.get("transfer"))) is not None and (
            done := percent_of(message)
        ) is not None:
            self.progress.update(bar, completed=done)


@contextmanager
def flow_progress(steps: dict[str, int], console: Console | None = None) -> Iterator[Progress]:
    """Bars named after task-run prefixes (e.g. {"extract": 4, "stage": 4, "convert": 100})."""
    progress = Progress(
        TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
        console=console or Console(stderr=True), transient=False,
    )
    bars = {name: progress.add_task(name, total=total) for name, total in steps.items()}
    watcher = _Watcher(progress, bars)
    loggers = [logging.getLogger(n) for n in ("prefect.task_runs", "prefect.flow_runs")]
    for logger in loggers:
        logger.addHandler(watcher)
    try:
        with progress:
            yield progress
            for name, bar in bars.items():
                progress.update(bar, completed=steps[name])
    finally:
        for logger in loggers:
            logger.removeHandler(watcher)
