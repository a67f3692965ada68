"""Cancellation that reaches the work of running tasks, and shows them Cancelled.

When a flow run is cancelled its process gets SIGTERM and the flow's task runner is shut down,
which waits for the running tasks. `CancellableTaskRunner` gives every submitted task run a
cancel flag (infra.cancellation) and sets them all on shutdown, so SSH and local command waits
stop within a poll; `stops_when_cancelled` turns the resulting error into a Cancelled state
instead of a failure (or, as the engine would have it, a crash).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect.states import Cancelled, State
from prefect.task_runners import ThreadPoolTaskRunner

from infra import cancellation

P = ParamSpec("P")
R = TypeVar("R")


class CancellableTaskRunner(ThreadPoolTaskRunner):
    """A thread pool whose tasks see a cancel flag, set when the runner shuts down."""

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers)
        self._flags: list[threading.Event] = []

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        flag = threading.Event()
        self._flags.append(flag)
        with cancellation.watching(flag):  # the pool copies this context into the task's thread
            return super().submit(*args, **kwargs)

    def cancel_all(self) -> None:
        for flag in self._flags:  # before the shutdown, which waits for the running tasks
            flag.set()
        super().cancel_all()


def stops_when_cancelled(fn: Callable[P, R]) -> Callable[P, R | State[Any]]:
    """A task body whose OperationCancelled ends the task run Cancelled, with its message."""

    @functools.wraps(fn)
    def body(*args: P.args, **kwargs: P.kwargs) -> R | State[Any]:
        try:
            return fn(*args, **kwargs)
        except cancellation.OperationCancelled as exc:
            return Cancelled(message=str(exc))

    return body
