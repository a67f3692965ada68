"""The resource ledger of a build: every cloud resource a run creates, recorded at once.

An entry is written *before* the create call (name and kind known, id not yet) and completed
after it, so a crash between the two still leaves a name to find the resource by. The ledger
is kept in the bucket (`zimage-ledger/<build>.json`) and in a local file; teardown and
`reap-orphans` read it back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from zimage import resources

log = logging.getLogger(__name__)

# kept: a product (custom image, snapshot) that got ready; teardown leaves it
State = Literal["creating", "created", "deleted", "failed", "kept"]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def boot_id() -> str | None:
    """This machine's current boot (Linux): a pid means something only within the boot that wrote it."""
    return _read("/proc/sys/kernel/random/boot_id")


def process_started(pid: int) -> str | None:
    """When the process started (clock ticks since boot), so that a reused pid is not taken for it."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name may hold spaces


class Entry(BaseModel):
    kind: str
    name: str
    id: str | None = None
    crn: str | None = None
    state: State = "creating"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    deleted_at: datetime | None = None
    error: str | None = None


class LedgerDocument(BaseModel):
    build_id: str
    image: str
    started: datetime = Field(default_factory=lambda: datetime.now(UTC))
    pid: int = Field(default_factory=os.getpid)
    host: str = Field(default_factory=socket.gethostname)
    # where and which process wrote it (`here()` fills them in); absent, the pid is nobody's to check
    boot_id: str | None = None
    pid_started: str | None = None
    flow_run_id: str | None = None
    keep_key: bool = False  # the mover's SSH private key stays after teardown (asked for)
    status: Literal["running", "finished", "failed"] = "running"
    entries: list[Entry] = Field(default_factory=list)

    def live(self) -> list[Entry]:
        """Entries that may still exist and are not kept products, in teardown order."""
        live = [e for e in self.entries if e.state in ("creating", "created", "failed")]
        return sorted(live, key=lambda e: resources.teardown_rank(e.kind))

    @classmethod
    def here(cls, **fields: Any) -> LedgerDocument:
        """A new ledger of a build run by this process."""
        pid = os.getpid()
        return cls(pid=pid, boot_id=boot_id(), pid_started=process_started(pid), **fields)

    def written_here(self) -> bool:
        """Whether this machine, in its current boot, wrote the ledger: only then is its pid ours to check."""
        return self.boot_id is not None and self.boot_id == boot_id()

    def process_alive(self) -> bool:
        """The writing process still runs (call only when `written_here`)."""
        started = process_started(self.pid)
        return started is not None and (self.pid_started is None or started == self.pid_started)


Sink = Callable[[LedgerDocument], None]


class Ledger:
    """Thread-safe; every change is written to every sink before the call returns."""

    def __init__(self, document: LedgerDocument, sinks: list[Sink]):
        self.document = document
        self._sinks = sinks
        self._lock = threading.Lock()

    def _save(self) -> None:
        errors = []
        for sink in self._sinks:
            try:
                sink(self.document)
            except Exception as exc:  # one sink down must not lose the record in the others
                errors.append(exc)
                log.warning("ledger %s: a sink failed: %s", self.document.build_id, exc)
        if errors and len(errors) == len(self._sinks):
            raise RuntimeError(f"ledger {self.document.build_id}: no sink could record the change: {errors[0]}")

    def intend(self, kind: str, name: str) -> Entry:
        resources.teardown_rank(kind)
        with self._lock:
            entry = Entry(kind=kind, name=name)
            self.document.entries.append(entry)
            self._save()
            return entry

    def created(self, entry: Entry, id: str, crn: str | None = None) -> None:
        with self._lock:
            entry.id, entry.crn, entry.state = id, crn, "created"
            self._save()

    def deleted(self, entry: Entry) -> None:
        with self._lock:
            entry.state, entry.deleted_at, entry.error = "deleted", datetime.now(UTC), None
            self._save()

    def failed(self, entry: Entry, error: str) -> None:
        with self._lock:
            entry.state, entry.error = "failed", error
            self._save()

    def refused(self, entry: Entry, error: str) -> None:
        """The API turned the create down: nothing exists to delete."""
        with self._lock:
            entry.state, entry.deleted_at, entry.error = "deleted", datetime.now(UTC), f"not created: {error}"
            self._save()

    def kept(self, entry: Entry) -> None:
        with self._lock:
            entry.state = "kept"
            self._save()

    def finish(self, ok: bool) -> None:
        with self._lock:
            self.document.status = "finished" if ok else "failed"
            self._save()


def file_sink(directory: Path) -> Sink:
    directory.mkdir(parents=True, exist_ok=True)

    def write(document: LedgerDocument) -> None:
        path = directory / f"{document.build_id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(document.model_dump_json(indent=2))
        os.replace(tmp, path)

    return write


def read_file(path: Path) -> LedgerDocument:
    return LedgerDocument.model_validate(json.loads(path.read_text()))


def default_directory() -> Path:
    return Path(os.environ.get("ZIMAGE_STATE_DIR", "~/.zimage")).expanduser() / "ledger"
