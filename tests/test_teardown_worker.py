"""Cancelling deploy-image from the API (what the UI's button does) under a real Prefect server and
a process worker: the worker sends the flow's process SIGTERM, kills it 30 s later and then runs
the cancellation hooks in its own process. Here the flow's own teardown is held up past those
30 s (its first DELETE hangs), so only the hook, working from the config and the ledger alone,
can finish. Cancelled while provisioning and while converting, the run leaves nothing in the fake
cloud and no upload in the bucket."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.prefect_server import PrefectServer, stop
from tests.support.vsi_emulator import FAST, IMAGE, DeploySite, EmulatedVsi, VsiEmulator
from zimage import objects

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
POOL = "zimage-cancel"
DEPLOY = f"""
from flows.deploy_image import deploy_image
deploy_image.from_source(source={str(REPO)!r}, entrypoint="flows/deploy_image.py:deploy_image").deploy(
    name="cancel-test", work_pool_name={POOL!r}, print_next_steps=False)
"""
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def api(server: PrefectServer, method: str, path: str, body: object | None = None) -> Any:
    request = urllib.request.Request(
        f"{server.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


@pytest.fixture(scope="module")
def deployment(prefect_server: PrefectServer) -> str:
    pool = prefect_server.prefect("work-pool", "create", POOL, "--type", "process", cwd=REPO)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    made = subprocess.run(
        [sys.executable, "-c", DEPLOY], cwd=REPO, env=prefect_server.env(), capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return str(api(prefect_server, "GET", "/deployments/name/deploy-image/cancel-test")["id"])


@pytest.fixture
def worker(prefect_server: PrefectServer, deploy_site: DeploySite, tmp_path: Path) -> Iterator[Path]:
    """A process worker with the environment a deploy needs (the site's variables are set by now)."""
    log = tmp_path / "worker.log"
    env = prefect_server.env(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["prefect", "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        stop(proc)


def _wait(what: str, done: Callable[[], bool], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{log.read_text(errors='replace')[-6000:]}")
        time.sleep(0.2)


def _cancel(server: PrefectServer, run_id: str) -> None:
    api(
        server,
        "POST",
        f"/flow_runs/{run_id}/set_state",
        {"state": {"type": "CANCELLING", "message": "cancelled by the test"}, "force": True},
    )


def _run_and_cancel(
    server: PrefectServer, deployment: str, site: DeploySite, log: Path, when: Callable[[], bool], **params: Any
) -> dict[str, Any]:
    parameters = {"config": site.config(), "image": IMAGE, **FAST, **params}
    run = api(server, "POST", f"/deployments/{deployment}/create_flow_run", {"parameters": parameters})
    _wait("the moment to cancel", when, log)
    site.fake.inject_delay("DELETE", r"^/v1/", 45)  # the flow's teardown hangs until the worker kills it
    _cancel(server, run["id"])
    state: dict[str, Any] = {}

    def ended() -> bool:
        state.update(api(server, "GET", f"/flow_runs/{run['id']}")["state"])
        return state["type"] in FINAL

    _wait("the flow run to end", ended, log)
    # the hook may still be deleting when the state is set: wait for the cloud, then check everything
    _wait("the teardown", lambda: site.fake.leftovers() == [], log, timeout=120)
    assert state["type"] == "CANCELLED", f"{state}\n{log.read_text(errors='replace')[-6000:]}"
    worker_log = log.read_text(errors="replace")
    # the worker's hook, not the killed flow, deleted the resources
    assert re.search(r"teardown after Cancelling: [1-9]\d* deleted, \d+ already gone, 0 failures", worker_log), (
        worker_log[-6000:]
    )
    assert site.bucket.pending_uploads() == []
    assert not [k for k in site.objects() if k.endswith(objects.MOVER_CONFIG)]
    (ledger,) = site.ledgers() or [json.loads(site.get(k)) for k in site.objects() if k.startswith("zimage-ledger/")]
    return {"run": run, "ledger": ledger}


def test_cancelled_while_provisioning_under_a_process_worker(
    prefect_server: PrefectServer, deployment: str, deploy_site: DeploySite, worker: Path
) -> None:
    site = deploy_site
    site.fake.stick("subnets", "pending")  # provisioning waits here until the run is cancelled

    def provisioning() -> bool:
        return any(s["name"].startswith("zimage-b") for s in site.fake.resources("subnets"))

    _run_and_cancel(prefect_server, deployment, site, worker, provisioning, resource_timeout_minutes=3.0)

    assert site.products() == ([], [])


def test_cancelled_while_converting_under_a_process_worker(
    prefect_server: PrefectServer, deployment: str, deploy_site: DeploySite, vsi_emulator: VsiEmulator, worker: Path
) -> None:
    site = deploy_site
    converting: list[EmulatedVsi] = []

    def frozen(vsi: EmulatedVsi) -> bool:  # the mover hangs once it has reported progress
        if [k for k in site.objects() if k.endswith(objects.PROGRESS)]:
            converting.append(vsi)
            return True
        return False

    vsi_emulator.freeze_when = frozen

    _run_and_cancel(prefect_server, deployment, site, worker, lambda: bool(converting), stale_minutes=10.0)

    (vsi,) = vsi_emulator.vsis
    assert vsi.frozen and vsi.killed  # only the teardown ended the mover
    assert site.products() == ([], [])
