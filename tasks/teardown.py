"""The resource ledger of a build and the teardown that reads it; orphan reaping.

Teardown is a plain function, not a Prefect task: it must also run while the flow run is being
cancelled (the API refuses new task runs then) and from the flow's state hooks, which a process
worker runs in its own process: so it needs nothing but the config and the ledger
(`teardown_flow_run`). It deletes in the order of DESIGN.md §10, waits for each deletion, marks
each entry deleted at once, tries every entry whatever fails, and may run any number of times:
an entry already deleted is skipped, a resource already gone counts as deleted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra import export_objects, mover_config
from infra import ledger as ledger_store
from infra.ibmcloud import BUILD_TAG, IbmCloud, build_tag, collection, ledger_kind
from infra.ledger import Entry, Ledger, LedgerDocument, Sink
from infra.object_store import ObjectStore
from infra.vpc import TEARDOWN_ORDER, Resource, Vpc, VpcError
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


def open_ledger(
    store: ObjectStore, build_id: str, image: str, flow_run_id: str | None, *, keep_key: bool = False
) -> Ledger:
    """A new ledger kept in the bucket, in a local file and as a Prefect artifact."""
    document = LedgerDocument.here(
        build_id=resources.check_build_id(build_id), image=image, flow_run_id=flow_run_id, keep_key=keep_key
    )
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


def _refused(exc: Exception) -> bool:
    """The API turned the create down for good, so nothing was made (a name conflict may be a
    lost earlier attempt's own resource, so it does not count)."""
    return (
        isinstance(exc, VpcError) and exc.status is not None and 400 <= exc.status < 500
        and exc.status not in (408, 409, 429) and exc.code != "validation_unique_failed"
    )


def tracked(ledger: Ledger, kind: str, name: str, create: Callable[[], Resource]) -> Resource:
    """Create a resource with its ledger entry written before the call and completed after it."""
    entry = ledger.intend(kind, name)
    try:
        created = create()
    except Exception as exc:
        if _refused(exc):
            ledger.refused(entry, str(exc))
        else:  # the call may have succeeded without us hearing of it: the name stays on record
            ledger.failed(entry, str(exc))
        raise
    ledger.created(entry, created.id, created.crn or None)
    return created


def key_directory() -> Path:
    return local_directory().parent / "keys"


def key_file(build_id: str) -> Path:
    return key_directory() / f"{resources.check_build_id(build_id)}.key"


# --- teardown ------------------------------------------------------------------------------------


@dataclass
class TeardownResult:
    deleted: list[dict[str, str]] = field(default_factory=list)
    gone: list[dict[str, str]] = field(default_factory=list)  # were already gone
    failures: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, str]]:
        return [{**r, "result": "deleted"} for r in self.deleted] + [{**r, "result": "already gone"} for r in self.gone]

    def attempt(self, what: str, action: Callable[[], Any]) -> Any:
        """Run one step; a failure of any kind is recorded (named) and the caller goes on."""
        try:
            return action()
        except Exception as exc:  # every step is tried: the failures are reported together
            log.error("%s: %s", what, exc)
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}" if not isinstance(exc, VpcError) else str(exc))
            return None


def _resource_of(vpc: Vpc, entry: Entry, settle_s: float, poll: float) -> Resource | None:
    kind = collection(entry.kind)
    if entry.id:
        return Resource(kind=kind, id=entry.id, name=entry.name, crn=entry.crn or "")
    # written before the create call, never completed: look the name up (build-scoped, so ours).
    # A list may lag behind a create, so a miss is believed only after the settle time.
    deadline = time.monotonic() + settle_s
    while True:
        found = vpc.find(kind, entry.name)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(poll)


def teardown(cloud: IbmCloud, ledger: Ledger, store: ObjectStore | None = None) -> TeardownResult:
    """Delete every live entry of the ledger, dependents first, then the build's objects in the
    bucket and its SSH key file; every step is tried whatever the others did."""
    result = TeardownResult()
    timing = cloud.timing
    doc = ledger.document
    for entry in doc.live():
        what = f"teardown of {entry.kind} {entry.name} (build {doc.build_id})"
        row = {"kind": entry.kind, "name": entry.name, "id": entry.id or ""}
        res = None

        def delete(e: Entry = entry) -> bool:
            nonlocal res
            res = _resource_of(cloud.vpc, e, timing.list_settle, timing.poll)
            return res is not None and cloud.vpc.delete(res, timeout=timing.delete_timeout, poll=timing.poll)

        before = len(result.failures)
        existed = result.attempt(what, delete)
        if len(result.failures) > before:
            result.attempt(f"ledger of build {doc.build_id}", lambda e=entry: ledger.failed(e, result.failures[-1]))
            continue
        result.attempt(f"ledger of build {doc.build_id}", lambda e=entry: ledger.deleted(e))
        (result.deleted if existed else result.gone).append(row | {"id": res.id if res else row["id"]})
    if store is not None:
        done = result.attempt(f"bucket clean-up of build {doc.build_id}",
                              lambda: mover_config.discard(store, doc.image, doc.build_id))
        done = (done or []) + (result.attempt(f"bucket clean-up of export {doc.build_id}",
                                              lambda: export_objects.discard_export(store, doc.image, doc.build_id))
                               or [])
        for line in done:
            log.info("teardown: %s", line)
    if not doc.keep_key:
        result.attempt(f"SSH key file of build {doc.build_id}", lambda: key_file(doc.build_id).unlink(missing_ok=True))
    return result


_LOCKS: dict[str, threading.Lock] = defaultdict(threading.Lock)


def teardown_once(cloud: IbmCloud, ledger: Ledger, store: ObjectStore | None) -> TeardownResult:
    """`teardown`, one caller at a time per build in this process (the flow's finally and a hook)."""
    with _LOCKS[ledger.document.build_id]:
        return teardown(cloud, ledger, store)


def ledgers_of_flow_run(store: ObjectStore | None, flow_run_id: str) -> list[LedgerDocument]:
    """The still-running ledgers a flow run wrote (normally one)."""
    return [d for d, _ in read_ledgers(store).values() if d.flow_run_id == flow_run_id and d.status == "running"]


def teardown_flow_run(
    connect_cloud: Callable[[], IbmCloud], store: ObjectStore, flow_run_id: str
) -> list[TeardownResult]:
    """Tear down every build a flow run left running, from its ledger alone: this works in any
    process (a process worker runs the cancellation hooks in its own, not the flow's). The cloud
    is connected to only when there is something to tear down."""
    results = []
    docs = ledgers_of_flow_run(store, flow_run_id)
    cloud = connect_cloud() if docs else None
    for doc in docs:
        assert cloud is not None
        sinks = [bucket_sink(store)]
        if doc.written_here():
            sinks.append(ledger_store.file_sink(local_directory()))
        ledger = Ledger(doc, sinks)
        result = teardown_once(cloud, ledger, store)
        result.attempt(f"ledger of build {doc.build_id}", lambda ledger=ledger: ledger.finish(ok=False))
        log.info("teardown of build %s (flow run %s): %d deleted, %d already gone, %d failures", doc.build_id,
                 flow_run_id, len(result.deleted), len(result.gone), len(result.failures))
        results.append(result)
    return results


class ImageBusy(RuntimeError):
    """Another build of the same image runs (or nothing can tell that it does not)."""


def check_image_free(store: ObjectStore, ledger: Ledger, flow_state: FlowRunState | None = None) -> None:
    """The per-image lock: fail when another build of the image may still run. Called after this
    build's own ledger is on record, so of two builds starting at once neither goes on unseen."""
    doc = ledger.document
    others = []
    for other, _ in read_ledgers(store).values():
        if other.build_id == doc.build_id or other.image != doc.image or other.status != "running":
            continue
        record = BuildRecord(other.build_id, [], other)
        judge(record, None, flow_state or prefect_flow_run_state, lambda _: None)
        if record.running:
            others.append(f"build {other.build_id} (started {other.started:%Y-%m-%d %H:%M} UTC on {other.host}: "
                          f"{record.why})")
    if others:
        raise ImageBusy(
            f"another build of image {doc.image} may still run, so this one stops before staging anything: "
            + "; ".join(others) + ". If it is dead, `zimage run reap-orphans --delete` (with --older-than-minutes "
            "when nothing can tell) closes its ledger."
        )


# --- orphans -------------------------------------------------------------------------------------


@dataclass
class BuildRecord:
    """What is known of one build found in the cloud: the resources proven to be its, its ledger
    (if any), and resources named like its that nothing proves are zimage's (never deleted)."""

    build_id: str
    resources: list[Resource]
    document: LedgerDocument | None = None
    running: bool = False  # left alone: it runs, or nothing can tell that it does not
    why: str = ""
    unproven: list[Resource] = field(default_factory=list)


def find_build_resources(vpc: Vpc) -> dict[str, list[Resource]]:
    """Temporary resources named exactly as a build's (`zimage-<build>-<role>`), in the run's
    resource group, grouped by build id."""
    found: dict[str, dict[tuple[str, str], Resource]] = defaultdict(dict)
    # snapshots too: an export's snapshot of a server's data volume is the build's until it ends
    for res in vpc.list_by_prefix(resources.PREFIX, (*TEARDOWN_ORDER, "snapshots")):
        build = resources.build_of(res.name)
        if build:
            found[build][(res.kind, res.id)] = res
    return {b: list(v.values()) for b, v in found.items()}


def tagged_volumes(vpc: Vpc) -> dict[str, list[Resource]]:
    """Volumes carrying zimage's tags, by the build their build tag names (snapshots carry the
    tags too, but they are products: only a ledger says one is unfinished)."""
    out: dict[str, list[Resource]] = defaultdict(list)
    for res, tags in vpc.list_tagged("volumes", BUILD_TAG):
        for tag in tags:
            build = tag.removeprefix(build_tag(""))
            if tag.startswith(build_tag("")) and resources.BUILD_ID_RE.fullmatch(build):
                out[build].append(res)
    return out


def read_ledgers(store: ObjectStore | None) -> dict[str, tuple[LedgerDocument, bool]]:
    """Ledgers by build id, each with whether it was written on this machine in this boot: local
    files first, then the bucket's copies."""
    out: dict[str, tuple[LedgerDocument, bool]] = {}
    directory = local_directory()
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            try:
                doc = ledger_store.read_file(path)
            except (OSError, ValueError) as exc:
                log.warning("ledger %s cannot be read: %s", path, exc)
                continue
            out[doc.build_id] = (doc, doc.written_here())
    if store is not None:
        for item in store.list(objects.LEDGER_PREFIX):
            build = Path(item.key).stem
            if build in out:
                continue
            try:
                doc = LedgerDocument.model_validate(json.loads(store.get_bytes(item.key)))
                out[build] = (doc, doc.written_here())
            except (ValueError, RuntimeError) as exc:
                log.warning("ledger %s cannot be read: %s", store.describe(item.key), exc)
    return out


FlowRunState = Callable[[str], str | None]  # flow run id -> state type name (None: unknown)


def prefect_flow_run_state(flow_run_id: str) -> str | None:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    except Exception as exc:  # the API may be gone, ephemeral or not know the run: then it says nothing
        log.info("flow run %s cannot be read: %s", flow_run_id, exc)
        return None
    return run.state.type.value if run.state else None


FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def judge(
    record: BuildRecord,
    older_than_minutes: float | None,
    flow_state: FlowRunState,
    created_at: Callable[[Resource], datetime | None],
) -> None:
    """Decide whether a build may be reaped. Only a ledger that says it ended, a flow run known to
    have ended or a process of this machine known to be gone says so; when nothing can tell, the
    build is kept, unless `older_than_minutes` is given and everything of it is older."""
    doc = record.document
    unknown = "no ledger on record"
    if doc is not None and doc.status != "running":
        record.running, record.why = False, f"its ledger says {doc.status}"
        return
    if doc is not None:
        state = flow_state(doc.flow_run_id) if doc.flow_run_id else None
        if state in FINAL_STATES:
            record.running, record.why = False, f"its flow run ended ({state.lower()}) without finishing the ledger"
            return
        if doc.written_here():
            alive = doc.process_alive()
            record.running = alive
            record.why = f"its process {doc.pid} on this machine " + ("runs" if alive else "is gone")
            return
        if state is not None:
            record.running, record.why = True, f"its flow run is {state.lower()}"
            return
        unknown = (
            f"its flow run {doc.flow_run_id} cannot be read from this Prefect API" if doc.flow_run_id
            else "it has no flow run to ask"
        ) + f" and its process {doc.pid} ran on another machine ({doc.host})"
    times = [t for t in (created_at(r) for r in record.resources) if t is not None]
    if doc is not None:
        times.append(doc.started)
    newest = max(times) if times else None
    minutes = (datetime.now(UTC) - newest).total_seconds() / 60 if newest else None
    if older_than_minutes is None:
        record.running = True
        record.why = f"unknown whether it runs: {unknown}; kept (give older_than_minutes to reap it by age)"
    elif minutes is not None and minutes < older_than_minutes:
        record.running, record.why = True, f"{unknown}; its newest resource is {minutes:.0f} min old"
    else:
        record.running = False
        record.why = f"{unknown}; " + (f"newest resource {minutes:.0f} min old" if minutes is not None else "no age")


def _proven(
    build: str, found: list[Resource], tagged: list[Resource], doc: LedgerDocument | None
) -> tuple[list[Resource], list[Resource]]:
    """(resources proven to be the build's, resources only named like them). Proof: the build's
    ledger lists it (by id, or by kind and name for an entry whose create never answered), or it
    carries the build's tag."""
    tagged_ids = {r.id for r in tagged}
    ids = {e.id for e in doc.entries if e.id} if doc else set()
    names = {(collection(e.kind), e.name) for e in doc.entries if not e.id} if doc else set()
    ours: dict[str, Resource] = {r.id: r for r in tagged}
    unproven = []
    for res in found:
        if res.id in ids or (res.kind, res.name) in names or res.id in tagged_ids:
            ours[res.id] = res
        else:
            unproven.append(res)
    if doc is not None:  # what the ledger holds, found by name or not (unfinished products included)
        for entry in doc.live():
            if entry.id and entry.id not in ours:
                ours[entry.id] = Resource(kind=collection(entry.kind), id=entry.id, name=entry.name,
                                          crn=entry.crn or "")
    return list(ours.values()), unproven


def _unanswered_products(vpc: Vpc, doc: LedgerDocument | None, known: list[Resource]) -> list[Resource]:
    """Products whose create never answered (the run died during the call): named by the image,
    not the build, so the prefix search misses them; the name was checked free before the create."""
    found = []
    for entry in doc.live() if doc is not None else []:
        if entry.kind in resources.PRODUCT_KINDS and entry.id is None:
            res = vpc.find(collection(entry.kind), entry.name)
            if res is not None and all(k.id != res.id for k in known):
                found.append(res)
    return found


def survey(
    cloud: IbmCloud,
    store: ObjectStore | None,
    older_than_minutes: float | None,
    flow_state: FlowRunState = prefect_flow_run_state,
) -> list[BuildRecord]:
    """Every build that has temporary resources (or unfinished products) left, judged."""
    by_name = find_build_resources(cloud.vpc)
    by_tag = tagged_volumes(cloud.vpc)
    ledgers = read_ledgers(store)
    builds = set(by_name) | set(by_tag) | {b for b, (d, _) in ledgers.items() if d.live() or d.status == "running"}

    def created_at(res: Resource) -> datetime | None:
        try:
            raw = cloud.vpc.get(res).get("created_at")
        except VpcError:
            return None
        return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None

    records = []
    for build in sorted(builds):
        doc = ledgers.get(build, (None, False))[0]
        ours, unproven = _proven(build, by_name.get(build, []), by_tag.get(build, []), doc)
        ours += _unanswered_products(cloud.vpc, doc, ours)
        if not ours and not unproven and (doc is None or doc.status != "running"):
            continue
        record = BuildRecord(build, ours, doc, unproven=unproven)
        if ours or doc is not None:
            judge(record, older_than_minutes, flow_state, created_at)
        else:
            record.running = True
            record.why = "nothing proves these are zimage's (no ledger of the build, no build tag): never deleted"
        records.append(record)
    return records


def reap(cloud: IbmCloud, record: BuildRecord, store: ObjectStore | None) -> TeardownResult:
    """Delete one dead build's resources in teardown order, abort its unfinished qcow2 upload,
    delete its mover configuration and key file, and close its ledger."""
    timing = cloud.timing
    result = TeardownResult()
    order = {collection(k): i for i, k in enumerate(resources.TEARDOWN_ORDER)}
    for res in sorted(record.resources, key=lambda r: order[r.kind]):
        row = {"kind": ledger_kind(res.kind), "name": res.name, "id": res.id}
        existed = result.attempt(
            f"reap {res} (build {record.build_id})",
            lambda r=res: cloud.vpc.delete(r, timeout=timing.delete_timeout, poll=timing.poll),
        )
        if existed is not None:
            (result.deleted if existed else result.gone).append(row)
    doc = record.document
    if doc is not None:
        if store is not None:
            result.attempt(f"bucket clean-up of build {record.build_id}",
                           lambda: mover_config.discard(store, doc.image, doc.build_id))
            result.attempt(f"bucket clean-up of export {record.build_id}",
                           lambda: export_objects.discard_export(store, doc.image, doc.build_id))
        if not doc.keep_key:
            result.attempt(f"SSH key file of build {record.build_id}",
                           lambda: key_file(doc.build_id).unlink(missing_ok=True))
        _close_ledger(record, store, result)
    return result


def _close_ledger(record: BuildRecord, store: ObjectStore | None, result: TeardownResult) -> None:
    doc = record.document
    assert doc is not None
    gone = {r["id"] for r in result.deleted + result.gone}
    names = {r["name"] for r in result.deleted + result.gone}
    for entry in doc.live():
        if entry.id in gone or (entry.id is None and entry.name in names):
            entry.state, entry.deleted_at = "deleted", datetime.now(UTC)
    if not result.failures:
        for entry in doc.live():  # never created, or not found by name: nothing is left of it
            entry.state, entry.deleted_at = "deleted", datetime.now(UTC)
        doc.status = "failed"
    sinks: list[Sink] = [ledger_store.file_sink(local_directory())] if doc.written_here() else []
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
         "names": ", ".join(sorted(x.name for x in r.resources)),
         "not ours": ", ".join(sorted(x.name for x in r.unproven))}
        for r in records
    ]
