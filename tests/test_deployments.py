"""prefect.yaml against a real Prefect server: deploy everything, run `demo` through a process
worker, and check the scheduled refreshes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.prefect_server import PrefectServer, stop

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("prefect.yaml", "examples", "flows", "tasks", "infra", "zimage", "datamover")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy, so the demo the worker runs writes its workdir there and not into the checkout.
    copy = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, copy / name)
    return copy


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer, project: Path) -> PrefectServer:
    pool = prefect_server.prefect("work-pool", "create", "zimage", "--type", "process", cwd=project)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = prefect_server.prefect("--no-prompt", "deploy", "--all", cwd=project, timeout=600)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    return prefect_server


def api(server: PrefectServer, method: str, path: str, body: object | None = None) -> object:
    import urllib.request

    request = urllib.request.Request(
        f"{server.url}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def deployments(server: PrefectServer) -> dict[str, dict]:
    found = api(server, "POST", "/deployments/filter", {"limit": 100})
    return {d["name"]: d for d in found}  # type: ignore[union-attr]


def test_every_flow_is_deployed_and_refreshes_are_scheduled(deployed: PrefectServer) -> None:
    found = deployments(deployed)
    expected = {"preflight", "extract-component", "build-image", "deploy-image", "deploy-host", "refresh",
                "create-instance", "reap-orphans", "stop-instance", "start-instance", "export-instance", "demo"}
    assert expected <= set(found), sorted(found)
    config = yaml.safe_load((ROOT / "examples" / "zimage.yaml").read_text())
    for source in config["sources"]:
        refresh = found[f"refresh-{source['name']}"]
        schedules = refresh["schedules"]
        assert schedules and schedules[0]["schedule"]["cron"] == "0 2 * * 6"
        assert schedules[0]["schedule"]["timezone"] == "Asia/Tokyo"
        assert schedules[0]["active"] is False, "the example's schedule must not run against example hosts"
        assert refresh["work_pool_name"] == "zimage"
    for name in expected:
        assert not found[name]["schedules"], f"{name} should be ad hoc"
        assert found[name]["work_pool_name"] == "zimage"


def test_demo_deployment_runs_on_a_process_worker(deployed: PrefectServer, project: Path) -> None:
    demo = deployments(deployed)["demo"]
    run = api(deployed, "POST", f"/deployments/{demo['id']}/create_flow_run", {"parameters": {"cylinders": 8}})
    log = project / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            ["prefect", "worker", "start", "--pool", "zimage", "--type", "process"],
            cwd=project, env=deployed.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 420
        state = None
        while time.monotonic() < deadline:
            state = api(deployed, "GET", f"/flow_runs/{run['id']}")["state"]  # type: ignore[index]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(2)
        assert state and state["type"] == "COMPLETED", f"{state}\n{log.read_text()[-4000:]}"
    finally:
        stop(worker)
    artifacts = api(deployed, "POST", "/artifacts/filter", {"limit": 200})
    keys = {a["key"] for a in artifacts if a.get("key")}  # type: ignore[union-attr]
    assert {"demo-summary", "deploy-image-zdemo", "build-image-zdemo"} <= keys, sorted(keys)
    assert (project / "zimage-demo" / "out" / "zdemo.qcow2").exists()
