"""What an operator sees of the runs in the Prefect UI, read back from a real Prefect server: run
names, the demo's Artifacts tab, parameter descriptions, the preflight report."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.support.sshd import Sshd, free_port
from tests.test_parmlib import source_config, write_members
from tests.test_preflight import Site

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

FLOW_MODULES = (
    "build_image",
    "create_instance",
    "demo",
    "deploy_image",
    "extract_component",
    "preflight",
    "reap_orphans",
    "refresh",
    "start_instance",
    "stop_instance",
)


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def runs_since(started: datetime) -> tuple[list[Any], list[Any]]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime, TaskRunFilter

    with _client() as client:
        flows = client.read_flow_runs(flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=started)))
        ids = [f.id for f in flows]
        from prefect.client.schemas.filters import FlowRunFilterId

        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), task_run_filter=TaskRunFilter()
        )
    return flows, tasks


def artifacts_of(flow_run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _client() as client:
        only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        return client.read_artifacts(artifact_filter=only)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from flows.demo import demo

    started = datetime.now(UTC)
    workdir = tmp_path_factory.mktemp("demo-runs") / "work"
    state = demo(workdir=str(workdir), volumes=1, cylinders=3, return_state=True)
    assert state.is_completed(), state.message
    flows, tasks = runs_since(started)
    return {"state": state, "flows": flows, "tasks": tasks}


def test_flow_runs_are_named_by_what_they_work_on(demo_runs: dict[str, Any]) -> None:
    names = sorted((f.name, f.flow_id) for f in demo_runs["flows"])
    assert [n for n, _ in names] == sorted(
        ["demo", "preflight-zdemo", "extract-demo-sysres", "extract-demo-data", "deploy-zdemo", "build-zdemo"]
    ), names


def test_task_runs_are_named_by_what_they_work_on_without_random_suffixes(demo_runs: dict[str, Any]) -> None:
    # a subflow has a task run in its parent too; the UI shows the subflow run in its place
    subflow_tasks = {f.parent_task_run_id for f in demo_runs["flows"]}
    names = sorted(t.name for t in demo_runs["tasks"] if t.id not in subflow_tasks)
    assert names == sorted(
        [
            "prepare-demo",
            "collect-subflow-artifacts",
            "check-source-SYSDEMO",
            "check-storage",
            "check-cos",
            "check-extraction-demo-sysres",
            "extract-ZRES01",
            "extract-ZRES02",
            "write-manifest-demo-sysres",
            "prune-demo-sysres",
            "check-extraction-demo-data",
            "extract-USR001",
            "write-manifest-demo-data",
            "prune-demo-data",
            "read-manifests-zdemo",
            "assemble-zdemo",
            "check-staged-zdemo",
            "save-build-zdemo",
            "stage-ZRES01",
            "stage-ZRES02",
            "stage-USR001",
            "stage-auxiliary-zdemo",
            "convert-zdemo",
        ]
    )
    assert "build-image" not in {t.name for t in demo_runs["tasks"]}, "no build-image task inside build-image"


def test_the_demo_run_shows_the_whole_demo_in_its_artifacts(demo_runs: dict[str, Any]) -> None:
    demo_id = demo_runs["state"].state_details.flow_run_id
    own = artifacts_of(demo_id)
    summary = next(a for a in own if a.key == "demo-summary")
    assert "| result | value |" in summary.data and "| | |" not in summary.data
    copied = {a.description for a in own if a.key is None and a.type in ("markdown", "table")}
    assert {
        "Preflight of image zdemo: ok (from preflight-zdemo)",
        "Build of image zdemo (from build-zdemo)",
        "Volumes of image zdemo (from build-zdemo)",
        "Deploy of image zdemo (from deploy-zdemo)",
        "Objects of image zdemo (from deploy-zdemo)",
    } <= copied, copied
    assert any(d.endswith("(from extract-demo-sysres)") for d in copied), copied
    build = next(a for a in own if a.description == "Build of image zdemo (from build-zdemo)")
    assert build.data.startswith("# Image zdemo built")


def _described(text: str) -> list[str]:
    """The parts of a description the UI renders as markdown: code spans kept apart."""
    return re.split(r"`[^`]*`", text)


def test_parameter_descriptions_render_in_the_ui() -> None:
    import importlib

    from prefect.utilities.callables import parameter_schema

    for module in FLOW_MODULES:
        flow = getattr(importlib.import_module(f"flows.{module}"), module)
        schema = parameter_schema(flow.fn).model_dump()
        for name, prop in schema["properties"].items():
            description = prop.get("description") or ""
            assert description, f"{flow.name}: parameter {name} has no description"
            for part in _described(description):  # "<image>" would read as an HTML tag and vanish
                assert not re.search(r"<[A-Za-z/!]", part), f"{flow.name}.{name}: {description!r}"
        for part in _described(inspect.getdoc(flow.fn) or ""):
            assert not re.search(r"<[A-Za-z/!]", part), f"{flow.name}: angle brackets in its description"


def test_a_failed_preflight_report_does_not_count_what_it_did_not_check(sshd: Sshd, tmp_path: Path) -> None:
    from flows.preflight import preflight

    site = Site(sshd, tmp_path)
    paths = write_members(tmp_path / "parmlib")
    config = site.config([source_config(sshd, paths, port=free_port())])
    state = preflight(config, system="SYSA", retry_delay_seconds=0, cloud_check=False, return_state=True)
    assert state.is_failed()
    markdown = next(a for a in artifacts_of(state.state_details.flow_run_id) if a.type == "markdown").data
    assert "| source SYSA: parmlib symbols | warning |" in markdown and "not checked" in markdown
    section = markdown.split("## IEASYM and TCP/IP checks: SYSA", 1)[1]
    assert "error(s)" not in section and "Not checked: no member was read" in section
