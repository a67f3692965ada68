"""When a failed task is worth another try: shared by the tasks that talk to other machines.

Only what can pass on another try is retried: a dropped or refused connection, a timeout, a
non-zero exit, a bad copy that a fresh extraction may fix. A mistake fails at once with its own
message: an unknown image, component or host name, a config that cannot be read or does not
validate, a parameter of the wrong kind, a digest that does not match, access that is denied.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from infra.object_store import ObjectStoreError
from infra.transfer import DigestMismatch, TransferError

# Object store answers that are the same on every try: credentials, permissions, the bucket.
PERMANENT_STORE_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "Forbidden",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
        "403",
    }
)


def worth_retrying(exc: BaseException) -> bool:
    """Whether another try of the task that raised `exc` may pass.

    An error's own `retryable` attribute decides first (SSH, extraction, staging errors carry one).
    """
    flag = getattr(exc, "retryable", None)
    if flag is not None:
        return bool(flag)
    if isinstance(exc, DigestMismatch):
        return False  # the bytes read are the bytes staged: reading them again gives the same digest
    if isinstance(exc, ObjectStoreError):
        return exc.code not in PERMANENT_STORE_CODES
    if isinstance(exc, LookupError | TypeError | ValueError):  # unknown names, bad config, bad parameters
        return False
    # A failed part or a dropped stream; any other error is a fault of the program or the input.
    return isinstance(exc, OSError | EOFError | TimeoutError | TransferError)


def retryable(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry condition: retry only what `worth_retrying` says may pass."""
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and worth_retrying(exc)
