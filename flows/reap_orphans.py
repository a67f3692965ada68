"""Flow reap-orphans: find the temporary resources of builds that are no longer running and delete
them (dry run by default).

Resources are looked for in the config's resource group only: by exactly the names builds give
(`zimage-<build>-<role>`, the build id as zimage makes it) and, for volumes, by the build tag, and
grouped by build id. A resource is deleted only when something proves it is zimage's: the build's
ledger lists it, or it carries the build's tag; a look-alike name alone is reported and left alone.
A build may be reaped when its ledger says it ended, its Prefect flow run is known to have ended,
or its process (ledger written on this machine, in this boot) is gone. When nothing can tell -
the flow run cannot be read (another or an ephemeral Prefect API) and the process ran elsewhere -
the build is kept and the summary says so, unless `older_than_minutes` is given and its newest
resource is older. Custom images and snapshots are products: only those the ledger of a dead
build holds as unfinished (still importing, failed) are deleted.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from infra.configfile import load_config
from infra.cos import open_object_store
from infra.iam import RetryPolicy
from infra.ibmcloud import Timing, connect, ledger_kind, resolve_api_key
from tasks.teardown import TeardownResult, reap, summarize, survey


def _run_name() -> str:
    return "list-orphans" if flow_run.parameters.get("dry_run", True) else "reap-orphans"


@flow(name="reap-orphans", flow_run_name=_run_name)
def reap_orphans(
    config: str,
    dry_run: bool = True,
    older_than_minutes: float | None = None,
    poll_seconds: float = 10.0,
    delete_timeout_minutes: float = 20.0,
    retry_base_seconds: float = 1.0,
) -> dict[str, Any]:
    """List (and unless dry_run, delete) leftover temporary resources of builds that are not running.

    Args:
        config: path of the zimage YAML config (its target names the account, region and bucket).
        dry_run: only list what would be deleted (the default).
        older_than_minutes: also reap a build whose state nothing can tell once its newest resource
            is older than this (default: such builds are kept).
        poll_seconds: interval between status reads while waiting for deletions.
        delete_timeout_minutes: longest wait for one deletion.
        retry_base_seconds: first back-off of a retried API call (429, 5xx).
    """
    log = get_run_logger()
    cfg = load_config(config)
    timing = Timing(
        poll=poll_seconds, delete_timeout=delete_timeout_minutes * 60,
        retry=RetryPolicy(base_delay=retry_base_seconds, max_delay=max(30 * retry_base_seconds, retry_base_seconds)),
    )
    cloud = connect(cfg.cloud, resolve_api_key(cfg.cloud), timing=timing)  # its resource group only
    store = open_object_store(cfg.cloud.cos)
    records = survey(cloud, store, older_than_minutes)
    dead = [r for r in records if not r.running]
    for r in records:
        log.info("build %s: %s (%s): %s", r.build_id, "left alone" if r.running else "orphaned", r.why,
                 ", ".join(x.name for x in r.resources))
        if r.unproven:
            log.warning("build %s: not deleted, nothing proves they are zimage's: %s", r.build_id,
                        ", ".join(str(x) for x in r.unproven))
    results: dict[str, TeardownResult] = {}
    if not dry_run:
        for record in dead:
            results[record.build_id] = reap(cloud, record, store)
    rows = summarize(records)
    for row in rows:
        done = results.get(row["build"])
        row["action"] = (
            "left alone" if row["running"]
            else "would delete" if dry_run
            else f"deleted {len(done.deleted)}, already gone {len(done.gone)}, failed {len(done.failures)}"
            if done else ""
        )
    if rows:
        create_table_artifact(rows, key="reap-orphans", description="Builds with temporary resources left")
    failures = [f for r in results.values() for f in r.failures]
    deleted = [f"{d['kind']} {d['name']}" for r in results.values() for d in r.deleted]
    verb = "would delete" if dry_run else "deleted"
    lines = [f"# reap-orphans ({'dry run' if dry_run else 'deleting'})", "",
             f"- builds with resources left: {len(records)}, not running: {len(dead)}"]
    lines += [f"- build `{r.build_id}` {verb}: " + ", ".join(f"`{x.name}`" for x in r.resources) for r in dead]
    lines += [f"- build `{r.build_id}` left alone: {r.why}" for r in records if r.running]
    lines += [f"- build `{r.build_id}`: named like zimage's but nothing proves it, never deleted: "
              + ", ".join(f"`{x.name}`" for x in r.unproven) for r in records if r.unproven]
    if failures:
        lines += ["", "**Failures:**"] + [f"- {f}" for f in failures]
    if dry_run and dead:
        lines += ["", "Run again with dry_run=false to delete them."]
    create_markdown_artifact(key="reap-orphans-summary", markdown="\n".join(lines) + "\n",
                             description="What reap-orphans found and did")
    if failures:
        raise RuntimeError(f"reap-orphans: {len(failures)} deletion(s) failed: " + "; ".join(failures))
    return {
        "dry_run": dry_run,
        "builds": rows,
        "orphaned": [r.build_id for r in dead],
        "would_delete" if dry_run else "deleted": (
            [f"{ledger_kind(x.kind)} {x.name}" for r in dead for x in r.resources] if dry_run else deleted
        ),
    }
