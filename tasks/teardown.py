"""The resource ledger of a build and the teardown that reads it; orphan reaping.

Teardown is a plain function, not a Prefect task: it must also run while the flow run is being
cancelled (the API refuses new task runs then) and from the flow's state hooks. It deletes in the
order of DESIGN.md §10, waits for each deletion, marks each entry deleted at once, and may run any
number of times: an entry already deleted is skipped, a resource already gone counts as deleted.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra import ledger as ledger_store
from infra.ibmcloud import IbmCloud, collection, ledger_kind
from infra.ledger import Entry, Ledger, LedgerDocument, Sink
from infra.object_store import ObjectStore
from infra.vpc import Resource, Vpc, VpcError
from zimage import objects, resources

log = logging.getLogger(__name__)


# --- the ledger and its sinks ------------------------------------------------------------------


def bucket_sink(store: ObjectStore) -> Sink:
    def write(document: LedgerDocument) -> None:
        body = document.model_dump_json(indent=1).encode()
        store.put_bytes(objects.ledger_key(document.build_id), body, objects.JSON)

    return write


def ledger_rows(document: LedgerDocument) -> list[dict[str, Any]]:
    return [
        {"kind": e.kind, "name": e.name, "id": e.id or "", "state": e.state, "build": document.build_id,
         "error": e.error or ""}
        for e in document.entries
    ]


def artifact_sink() -> Sink:
    """The ledger as a Prefect table artifact, a new version at every change."""

    def write(document: LedgerDocument) -> None:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(
            ledger_rows(document) or [{"kind": "", "name": "", "id": "", "state": "", "build": "", "error": ""}],
            key=f"ledger-{document.build_id}",
            description=f"Cloud resources of build {document.build_id} ({document.image}), {document.status}",
        )

    return write


def local_directory() -> Path:
    return ledger_store.default_directory()


def open_ledger(store: ObjectStore, build_id: str, image: str, flow_run_id: str | None) -> Ledger:
    """A new ledger kept in the bucket, in a local file and as a Prefect artifact."""
    document = LedgerDocument(build_id=resources.check_build_id(build_id), image=image, flow_run_id=flow_run_id)
    sinks = [bucket_sink(store), ledger_store.file_sink(local_directory()), artifact_sink()]
    failed = []
    for sink in sinks:  # the build is on record before its first resource
        try:
            sink(document)
        except Exception as exc:  # one sink down must not stop the run; all down must
            log.warning("ledger %s: a sink failed: %s", build_id, exc)
            failed.append(exc)
    if len(failed) == len(sinks):
        raise RuntimeError(f"ledger {build_id}: no sink could record the build: {failed[0]}")
    return Ledger(document, sinks)


def tracked(ledger: Ledger, kind: str, name: str, create: Callable[[], Resource]) -> Resource:
    """Create a resource with its ledger entry written before the call and completed after it."""
    entry = ledger.intend(kind, name)
    try:
        created = create()
    except Exception as exc:
        # the call may have succeeded without us hearing of it: the name stays on record
        ledger.failed(entry, str(exc))
        raise
    ledger.created(entry, created.id, created.crn or None)
    return created


# --- teardown ------------------------------------------------------------------------------------


@dataclass
class TeardownResult:
    deleted: list[dict[str, str]] = field(default_factory=list)
    gone: list[dict[str, str]] = field(default_factory=list)  # were already gone
    failures: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, str]]:
        return [{**r, "result": "deleted"} for r in self.deleted] + [{**r, "result": "already gone"} for r in self.gone]


def _resource_of(vpc: Vpc, entry: Entry) -> Resource | None:
    kind = collection(entry.kind)
    if entry.id:
        return Resource(kind=kind, id=entry.id, name=entry.name, crn=entry.crn or "")
    # written before the create call, never completed: look the name up
    return vpc.find(kind, entry.name)


def teardown(cloud: IbmCloud, ledger: Ledger) -> TeardownResult:
    """Delete every live entry of the ledger, dependents first; carries on past failures."""
    result = TeardownResult()
    timing = cloud.timing
    for entry in ledger.document.live():
        row = {"kind": entry.kind, "name": entry.name, "id": entry.id or ""}
        try:
            res = _resource_of(cloud.vpc, entry)
            existed = res is not None and cloud.vpc.delete(res, timeout=timing.delete_timeout, poll=timing.poll)
        except VpcError as exc:
            log.error("teardown of build %s: %s", ledger.document.build_id, exc)
            ledger.failed(entry, str(exc))
            result.failures.append(str(exc))
            continue
        ledger.deleted(entry)
        (result.deleted if existed else result.gone).append(row | {"id": res.id if res else row["id"]})
    return result


# --- orphans -------------------------------------------------------------------------------------


@dataclass
class BuildRecord:
    """What is known of one build found in the cloud: its resources and its ledger, if any."""

    build_id: str
    resources: list[Resource]
    document: LedgerDocument | None = None
    local: bool = False  # the ledger was written on this machine, so its pid can be checked here
    running: bool = False
    why: str = ""


def find_build_resources(vpc: Vpc) -> dict[str, list[Resource]]:
    """Temporary resources carrying zimage's name prefix or build tag, grouped by build id."""
    found: dict[str, dict[tuple[str, str], Resource]] = defaultdict(dict)
    for res in vpc.list_by_prefix(resources.PREFIX):
        build = resources.build_of(res.name)
        if build:
            found[build][(res.kind, res.id)] = res
    return {b: list(v.values()) for b, v in found.items()}


_TAG_PREFIX_ANY = "zimage"


def tagged_volumes(vpc: Vpc) -> list[Resource]:
    """Volumes tagged `zimage` (snapshots carry the tag too, but they are products)."""
    return [r for r in vpc.list_by_tag(_TAG_PREFIX_ANY) if r.kind == "volumes"]


def read_ledgers(store: ObjectStore | None) -> dict[str, tuple[LedgerDocument, bool]]:
    """Ledgers by build id: local files (marked local) first, then the bucket's copies."""
    out: dict[str, tuple[LedgerDocument, bool]] = {}
    directory = local_directory()
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            try:
                doc = ledger_store.read_file(path)
            except (OSError, ValueError) as exc:
                log.warning("ledger %s cannot be read: %s", path, exc)
                continue
            out[doc.build_id] = (doc, doc.host == socket.gethostname())
    if store is not None:
        for item in store.list(objects.LEDGER_PREFIX):
            build = Path(item.key).stem
            if build in out:
                continue
            try:
                doc = LedgerDocument.model_validate(json.loads(store.get_bytes(item.key)))
                out[build] = (doc, doc.host == socket.gethostname())
            except (ValueError, RuntimeError) as exc:
                log.warning("ledger %s cannot be read: %s", store.describe(item.key), exc)
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


FlowRunState = Callable[[str], str | None]  # flow run id -> state type name (None: unknown)


def prefect_flow_run_state(flow_run_id: str) -> str | None:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    except Exception as exc:  # the API may be gone or not know the run: then it says nothing
        log.info("flow run %s cannot be read: %s", flow_run_id, exc)
        return None
    return run.state.type.value if run.state else None


FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def judge(
    record: BuildRecord,
    older_than_minutes: float,
    flow_state: FlowRunState,
    created_at: Callable[[Resource], datetime | None],
) -> None:
    """Decide whether a build is still running (its resources are then left alone)."""
    doc = record.document
    if doc is not None and doc.status == "running":
        state = flow_state(doc.flow_run_id) if doc.flow_run_id else None
        if state in FINAL_STATES:
            record.running, record.why = False, f"its flow run ended ({state.lower()}) without finishing the ledger"
            return
        if record.local and not pid_alive(doc.pid):
            record.running, record.why = False, f"its process {doc.pid} is gone"
            return
        if record.local or state is not None:
            who = "process" if record.local else "flow run"
            record.running, record.why = True, f"its ledger and its {who} say it runs"
            return
    elif doc is not None:
        record.running, record.why = False, f"its ledger says {doc.status}"
        return
    # no ledger, or one from another machine with no flow run to ask: go by age
    ages = [t for t in (created_at(r) for r in record.resources) if t is not None]
    newest = max(ages) if ages else None
    minutes = (datetime.now(UTC) - newest).total_seconds() / 60 if newest else None
    if minutes is not None and minutes < older_than_minutes:
        record.running, record.why = True, f"no live process known, but its newest resource is {minutes:.0f} min old"
    else:
        record.running = False
        record.why = "no ledger on record" if doc is None else "no process or flow run to ask"
        if minutes is not None:
            record.why += f"; newest resource {minutes:.0f} min old"


def survey(
    cloud: IbmCloud,
    store: ObjectStore | None,
    older_than_minutes: float,
    flow_state: FlowRunState = prefect_flow_run_state,
) -> list[BuildRecord]:
    """Every build that has temporary resources left, judged running or not."""
    by_build = find_build_resources(cloud.vpc)
    for vol in tagged_volumes(cloud.vpc):
        build = resources.build_of(vol.name)
        if build and all(r.id != vol.id for r in by_build.get(build, [])):
            by_build.setdefault(build, []).append(vol)
    ledgers = read_ledgers(store)

    def created_at(res: Resource) -> datetime | None:
        try:
            raw = cloud.vpc.get(res).get("created_at")
        except VpcError:
            return None
        return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None

    records = []
    for build in sorted(by_build):
        doc, local = ledgers.get(build, (None, False))
        record = BuildRecord(build, by_build[build], doc, local)
        judge(record, older_than_minutes, flow_state, created_at)
        records.append(record)
    return records


def reap(
    cloud: IbmCloud, record: BuildRecord, store: ObjectStore | None, busy_images: Set[str] = frozenset()
) -> TeardownResult:
    """Delete one dead build's resources in teardown order, abort its unfinished qcow2 upload and
    delete its mover configuration (unless a running build works on the same image), and close
    its ledger."""
    timing = cloud.timing
    result = TeardownResult()
    order = {collection(k): i for i, k in enumerate(resources.TEARDOWN_ORDER)}
    for res in sorted(record.resources, key=lambda r: order[r.kind]):
        row = {"kind": ledger_kind(res.kind), "name": res.name, "id": res.id}
        try:
            existed = cloud.vpc.delete(res, timeout=timing.delete_timeout, poll=timing.poll)
        except VpcError as exc:
            log.error("reap build %s: %s", record.build_id, exc)
            result.failures.append(str(exc))
            continue
        (result.deleted if existed else result.gone).append(row)
    if record.document is not None:
        if store is not None and record.document.image not in busy_images:
            _discard_objects(store, record.document.image, result)
        _close_ledger(record, store, result)
    return result


def _discard_objects(store: ObjectStore, image: str, result: TeardownResult) -> None:
    key = objects.qcow2_key(image)
    try:
        for upload in store.pending_uploads(key):
            store.abort_multipart(key, upload.upload_id)
            log.info("aborted the unfinished upload %s of %s", upload.upload_id, store.describe(key))
        store.delete(objects.mover_config_key(image))
    except Exception as exc:  # objects cost little; the message says what is left
        result.failures.append(f"bucket clean-up of {image}: {exc}")


def _close_ledger(record: BuildRecord, store: ObjectStore | None, result: TeardownResult) -> None:
    doc = record.document
    assert doc is not None
    gone = {r["id"] for r in result.deleted + result.gone}
    names = {r["name"] for r in result.deleted + result.gone}
    for entry in doc.entries:
        if entry.state != "deleted" and (entry.id in gone or entry.name in names or entry.id is None):
            entry.state, entry.deleted_at = "deleted", datetime.now(UTC)
    if not result.failures:
        doc.status = "failed"
    sinks: list[Sink] = [ledger_store.file_sink(local_directory())] if record.local else []
    if store is not None:
        sinks.append(bucket_sink(store))
    for sink in sinks:
        try:
            sink(doc)
        except Exception as exc:  # the resources are gone; a stale ledger only costs another look
            log.warning("ledger of build %s not updated: %s", record.build_id, exc)


def summarize(records: Iterable[BuildRecord]) -> list[dict[str, Any]]:
    return [
        {"build": r.build_id, "running": r.running, "why": r.why, "resources": len(r.resources),
         "names": ", ".join(sorted(x.name for x in r.resources))}
        for r in records
    ]
