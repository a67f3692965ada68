"""When a failed task is worth another try: shared by the tasks that talk to other machines."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import TaskRun
from prefect.states import State


def retryable(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Retry what may pass (dropped connection, timeout, non-zero exit, bad copy), not what will
    fail again (host key, authentication, bad config or command output). Errors say which by a
    `retryable` attribute; other OS-level errors are taken as passing."""
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    if not isinstance(exc, BaseException):
        return False
    flag = getattr(exc, "retryable", None)
    if flag is not None:
        return bool(flag)
    return isinstance(exc, OSError | EOFError | TimeoutError)
