"""Cancelling a deployed run from the Prefect API, as the UI's Cancel does: the worker stops the
run within seconds even while an SSH command has hours to go, and the run and its tasks show
Cancelled, not Crashed; nothing half-staged stays behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prefect_server import PrefectServer, stop
from tests.support.sshd import Sshd
from tests.test_deployments import PROJECT_FILES, api, deployments
from tests.test_preflight import Site, volumes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
# An extraction that would take five minutes: the volume never arrives.
SLOW = "echo {target} >/dev/null; sleep 300"


def wait_for(what: str, probe: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{log.read_text()[-4000:]}")


def sleeping(sshd: Sshd) -> list[int]:
    """This test's `sleep 300` commands: the ones the test's sshd started."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                commands[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue

    def under_sshd(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == sshd.process.pid:
                return True
        return False

    return [pid for pid, command in commands.items() if command == b"sleep\x00300\x00" and under_sshd(pid)]


def task_runs(server: PrefectServer, flow_run_id: str) -> dict[str, dict[str, Any]]:
    found = api(server, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    return {t["name"]: t for t in found}  # type: ignore[union-attr]


def test_a_cancelled_extraction_stops_within_seconds_and_shows_cancelled(
    prefect_server: PrefectServer, sshd: Sshd, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        if name != "prefect.yaml":
            shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    site = Site(sshd, tmp_path)
    source = {"name": "SYSA", **sshd.endpoint(), "extraction": {"command": SLOW}}
    config = site.config(
        [source], components=[{"name": "comp-sysa", "source": "SYSA", "type": "sysres", "volumes": volumes(2)}]
    )
    (project / "prefect.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "zimage-cancel-test",
                "prefect-version": "3.1.0",
                "build": None,
                "push": None,
                "deployments": [
                    {
                        "name": "extract-slow",
                        "entrypoint": "flows/extract_component.py:extract_component",
                        "parameters": {"config": config, "component": "comp-sysa"},
                        "work_pool": {"name": "zimage", "work_queue_name": "default"},
                    }
                ],
            },
            sort_keys=False,
        )
    )
    pool = prefect_server.prefect("work-pool", "create", "zimage", "--type", "process", cwd=project)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = prefect_server.prefect("--no-prompt", "deploy", "--all", cwd=project, timeout=600)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    deployment = deployments(prefect_server)["extract-slow"]
    run = api(prefect_server, "POST", f"/deployments/{deployment['id']}/create_flow_run", {})
    run_id = run["id"]  # type: ignore[index]
    log = project / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            ["prefect", "worker", "start", "--pool", "zimage", "--type", "process"],
            cwd=project,
            env=prefect_server.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def extracting() -> bool:
            tasks = task_runs(prefect_server, run_id)
            return all(tasks.get(f"extract-{v}", {}).get("state_type") == "RUNNING" for v in ("V00000", "V00001"))

        wait_for("both volumes extracting", extracting, 240, log)
        wait_for("the extraction commands on the source", lambda: len(sleeping(sshd)) >= 2, 60, log)
        asked = time.monotonic()
        api(
            prefect_server,
            "POST",
            f"/flow_runs/{run_id}/set_state",
            {"state": {"type": "CANCELLING", "message": "cancelled by the test"}, "force": True},
        )

        def ended() -> dict[str, Any] | None:
            state = api(prefect_server, "GET", f"/flow_runs/{run_id}")["state"]  # type: ignore[index]
            return state if state["type"] in FINAL else None

        state = wait_for("the end of the cancelled run", ended, 60, log)
        took = time.monotonic() - asked
    finally:
        stop(worker)
        for pid in sleeping(sshd):  # the source's commands outlive the channel (SSH has no hang-up without a pty)
            os.kill(pid, signal.SIGKILL)
    assert state["type"] == "CANCELLED", f"{state}\n{log.read_text()[-4000:]}"
    assert took < 20, f"cancellation took {took:.1f} s"
    tasks = task_runs(prefect_server, run_id)
    for volser in ("V00000", "V00001"):
        task = tasks[f"extract-{volser}"]
        assert task["state_type"] == "CANCELLED", (volser, task["state"])
        assert "stopped because the run was cancelled" in task["state"]["message"]
    assert not any(site.root.rglob("*.gz*")), "nothing of the cancelled extraction stays staged"
