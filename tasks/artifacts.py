"""Bringing the results of subflow runs to the run that started them.

The Prefect UI shows a flow run's own artifacts only; a flow that composes others (the demo)
copies its subflows' summaries and tables, so its Artifacts tab shows the whole run.
"""

from __future__ import annotations

from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.runtime import flow_run, task_run

COPIED_TYPES = ["markdown", "table"]  # progress bars are live views, not results


def _subflow_runs(client: SyncPrefectClient, parent: UUID) -> list[FlowRun]:
    """Every flow run below `parent`, nested ones too, each level in start order."""
    found: list[FlowRun] = []
    level = [parent]
    while level:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=level)),
            sort=FlowRunSort.START_TIME_ASC,
        )
        found += runs
        level = [r.id for r in runs]
    return found


@task(name="collect-subflow-artifacts", task_run_name="collect-subflow-artifacts", cache_policy=NO_CACHE)
def collect_subflow_artifacts() -> list[str]:
    """Copy the markdown and table artifacts of every subflow run into this flow run; returns
    what was copied as `RUN: description` lines."""
    here, this_task = UUID(flow_run.id), UUID(task_run.id)
    copied: list[str] = []
    with get_client(sync_client=True) as client:
        runs = _subflow_runs(client, here)
        for run in runs:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]), type=ArtifactFilterType(any_=COPIED_TYPES)
                ),
                sort=ArtifactSort.CREATED_DESC,
            )
            for artifact in reversed(artifacts):
                what = artifact.description or artifact.key or artifact.type or "artifact"
                client.create_artifact(
                    ArtifactCreate(
                        type=artifact.type,
                        data=artifact.data,
                        description=f"{what} (from {run.name})",
                        flow_run_id=here,
                        task_run_id=this_task,
                    )
                )
                copied.append(f"{run.name}: {what}")
    get_run_logger().info("copied %d artifact(s) of %d subflow run(s) into this run", len(copied), len(runs))
    return copied
