"""Shared pieces of the IBM Cloud fake: API errors, the resource store with its status machine,
request records and fault rules."""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Field that carries a resource's state; kinds not listed here have none (keys, security groups).
STATUS_FIELD: dict[str, str] = {
    "vpcs": "status",
    "subnets": "status",
    "volumes": "status",
    "instances": "status",
    "floating_ips": "status",
    "images": "status",
    "snapshots": "lifecycle_state",
}
# State a new resource reaches after `polls_to_ready` reads.
READY_STATUS: dict[str, str] = {
    "vpcs": "available",
    "subnets": "available",
    "volumes": "available",
    "instances": "running",
    "floating_ips": "available",
    "images": "available",
    "snapshots": "stable",
}
TRANSITIONAL = {"pending", "deleting", "starting", "stopping"}

SECRET_FIELDS = frozenset({"apikey", "refresh_token", "access_token", "secret_access_key", "password", "passphrase"})


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(prefix: str = "r000-") -> str:
    return f"{prefix}{uuid.uuid4()}"


class FakeApiError(Exception):
    """An error response in the VPC API's shape ({"errors": [{code, message}], "trace"})."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "errors": [{"code": self.code, "message": self.message, "more_info": ""}],
            "trace": str(uuid.uuid4()),
        }


def not_found(kind: str, rid: str) -> FakeApiError:
    return FakeApiError(404, "not_found", f"{kind[:-1]} with ID {rid} cannot be found")


def redact(value: Any) -> Any:
    """A copy of a request body with secret-looking fields replaced, for the request record."""
    if isinstance(value, dict):
        return {k: "<redacted>" if k in SECRET_FIELDS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


@dataclass
class FaultRule:
    """Answer `times` matching requests with `status` (before or after really handling them)."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int
    retry_after: float | None = None
    after: bool = False
    delay: float = 0.0
    truncate: bool = False  # answer 200 with a body cut short (the client's read of it breaks)

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (method, "*") and bool(self.path.search(path))


@dataclass
class StickRule:
    kind: str
    status: str
    name: re.Pattern[str] | None

    def holds(self, kind: str, res: dict[str, Any]) -> bool:
        field_name = STATUS_FIELD.get(kind)
        return (
            self.kind == kind
            and field_name is not None
            and res.get(field_name) == self.status
            and (self.name is None or bool(self.name.search(res.get("name", ""))))
        )


@dataclass
class Entry:
    """One stored resource: the public JSON plus what only the fake knows."""

    kind: str
    res: dict[str, Any]
    polls_left: int = 0
    ready_status: str | None = None
    private: dict[str, Any] = field(default_factory=dict)
    on_removed: Callable[[], None] | None = None
    born: float = field(default_factory=time.monotonic)  # when it was created, for lists that lag

    @property
    def status(self) -> str | None:
        name = STATUS_FIELD.get(self.kind)
        return self.res.get(name) if name else None

    def set_status(self, status: str) -> None:
        name = STATUS_FIELD.get(self.kind)
        if name:
            self.res[name] = status
        if self.kind == "instances":
            self.res["lifecycle_state"] = (
                "deleting" if status == "deleting" else ("stable" if status in ("running", "stopped") else "pending")
            )


class Store:
    """Resources by kind and id, guarded by one lock; reads advance pending/deleting states."""

    def __init__(self, polls_to_ready: int, polls_to_delete: int) -> None:
        self.lock = threading.RLock()
        self.polls_to_ready = polls_to_ready
        self.polls_to_delete = polls_to_delete
        self.kinds: dict[str, dict[str, Entry]] = {}
        self.stuck: list[StickRule] = []
        self.list_lag = 0.0  # seconds a new resource stays out of list results (eventual consistency)
        self.lag_from = 0.0  # resources created before this moment are not held back

    def add(self, entry: Entry, *, pending: bool = True) -> Entry:
        with self.lock:
            if pending and entry.kind in READY_STATUS:
                entry.set_status("pending")
                entry.ready_status = READY_STATUS[entry.kind]
                entry.polls_left = self.polls_to_ready
            self.kinds.setdefault(entry.kind, {})[entry.res["id"]] = entry
            return entry

    def entries(self, kind: str) -> list[Entry]:
        with self.lock:
            return list(self.kinds.get(kind, {}).values())

    def listed(self, kind: str) -> list[Entry]:
        """What a list call shows: resources younger than `list_lag` are not there yet."""
        now = time.monotonic()
        return [e for e in self.entries(kind) if e.born < self.lag_from or now - e.born >= self.list_lag]

    def all_entries(self) -> Iterator[Entry]:
        with self.lock:
            for by_id in list(self.kinds.values()):
                yield from list(by_id.values())

    def find(self, kind: str, rid: str) -> Entry | None:
        with self.lock:
            return self.kinds.get(kind, {}).get(rid)

    def get(self, kind: str, rid: str) -> Entry:
        entry = self.find(kind, rid)
        if entry is None:
            raise not_found(kind, rid)
        return entry

    def by_name(self, kind: str, name: str) -> Entry | None:
        with self.lock:
            return next((e for e in self.entries(kind) if e.res.get("name") == name), None)

    def observe(self, kind: str, rid: str) -> Entry:
        """A client read: step the resource's state machine, then return it (404 once gone)."""
        with self.lock:
            entry = self.get(kind, rid)
            self._step(entry)
            return self.get(kind, rid)

    def _step(self, entry: Entry) -> None:
        if entry.status not in TRANSITIONAL or entry.ready_status is None:
            return
        if any(rule.holds(entry.kind, entry.res) for rule in self.stuck):
            return
        if entry.polls_left > 0:
            entry.polls_left -= 1
            return
        if entry.status == "deleting":
            self.remove(entry)
        else:
            entry.set_status(entry.ready_status)

    def start_deleting(self, entry: Entry) -> None:
        with self.lock:
            if entry.kind not in STATUS_FIELD:
                self.remove(entry)
                return
            if entry.status == "deleting":
                return
            entry.set_status("deleting")
            entry.ready_status = "gone"
            entry.polls_left = self.polls_to_delete

    def transition(self, entry: Entry, status: str, then: str, polls: int | None = None) -> None:
        """Move `entry` to `status` now and to `then` after some reads (e.g. stopping → stopped)."""
        with self.lock:
            entry.set_status(status)
            entry.ready_status = then
            entry.polls_left = self.polls_to_ready if polls is None else polls

    def remove(self, entry: Entry) -> None:
        with self.lock:
            if self.kinds.get(entry.kind, {}).pop(entry.res["id"], None) is not None and entry.on_removed:
                entry.on_removed()

    def public(self, entry: Entry) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(entry.res)
