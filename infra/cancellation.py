"""A cancel flag that long waits look at, so a cancelled run stops within a second or so instead
of when its SSH command or its timeout ends.

The flag belongs to one task run: the task runner (tasks/cancellation.py) sets it when the flow
run is cancelled; the waits in infra (an SSH command, a local command) check it between short
polls and raise `OperationCancelled`. Outside a task run there is no flag and nothing is checked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_flag: ContextVar[threading.Event | None] = ContextVar("zimage_cancel_flag", default=None)


class OperationCancelled(RuntimeError):
    """The run this work belongs to was cancelled; nothing is retried."""

    retryable = False


@contextmanager
def watching(flag: threading.Event) -> Iterator[None]:
    """Work started inside (and the threads whose context is copied here) sees `flag`."""
    token = _flag.set(flag)
    try:
        yield
    finally:
        _flag.reset(token)


def requested() -> bool:
    flag = _flag.get()
    return flag is not None and flag.is_set()


def check(what: str) -> None:
    """Raise OperationCancelled naming `what` when the run was cancelled."""
    if requested():
        raise OperationCancelled(f"{what}: stopped because the run was cancelled")
