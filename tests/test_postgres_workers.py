"""Scaling out as the README's "Scaling out" says: a Prefect server on PostgreSQL, two process workers on
the pool, and the refreshes of three source systems at once (sources and storage on the test sshd, the
demo's local object store and mover). Runs of one system never overlap, runs of different systems do,
every run completes and nothing is left."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.demo import PARMLIB, demo_config
from tests.support.postgres import Postgres
from tests.support.prefect_server import PrefectServer, running_server, stop
from tests.support.sshd import Sshd
from zimage import ckd

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "infra", "zimage", "datamover")
SYSTEMS = ("SYSA", "SYSB", "SYSC")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def system_site(tmp: Path, sshd: Sshd, system: str) -> Path:
    """A config of one source system on the sshd (source and storage), with its own object store and
    mover output (the local mover writes OUT/report.json)."""
    base = tmp / system.lower()
    doc = demo_config(base, volumes=1, cylinders=3)
    source = doc["sources"][0]
    source.pop("transport")
    source.update(sshd.endpoint(), name=system)
    source["extraction"]["command"] = (
        f"env PYTHONPATH={REPO} {sys.executable} -m infra.extract_agent --volume {base}/source/{{volser}}.ckd "
        f"--target {{target}} --identity {sshd.client_key} --known-hosts {sshd.known_hosts}"
    )
    doc["storage"] = sshd.endpoint(root=str(tmp / "storage"))
    for comp in doc["components"]:
        comp["source"], comp["name"] = system, f"{system.lower()}-{comp['name']}"
    doc["images"][0].update(name=f"{system.lower()}-img", components=[c["name"] for c in doc["components"]])
    (base / "source" / "parmlib").mkdir(parents=True)
    for name, text in PARMLIB.items():
        (base / "source" / "parmlib" / name).write_text(text)
    for comp in doc["components"]:
        for vol in comp["volumes"]:
            with (base / "source" / f"{vol['volser']}.ckd").open("wb") as out:
                out.writelines(ckd.volume_tracks(vol["volser"], 3, data_every=2))
    for directory in ("objects", "out"):
        (base / directory).mkdir()
    (tmp / "storage").mkdir(exist_ok=True)
    path = base / "zimage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def project(tmp: Path, configs: dict[str, Path]) -> Path:
    """The checkout as a worker host has it, with one scheduled-style refresh deployment per system."""
    root = tmp / "project"
    for name in PACKAGES:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    deployments = [
        {
            "name": f"refresh-{system}",
            "entrypoint": "flows/refresh.py:refresh",
            "tags": ["zimage", "refresh", system],
            # the demo's volumes hold no z/OS system, so the preflight's IPL-chain check would refuse the
            # second refresh of SYSA (it reads the first one's staged volumes)
            "parameters": {"config": str(path), "image": f"{system.lower()}-img", "skip_preflight": True},
            "concurrency_limit": 1,
            "work_pool": {"name": "zimage", "work_queue_name": "default"},
        }
        for system, path in configs.items()
    ]
    doc = {"name": "zimage", "prefect-version": "3.1.0", "build": None, "push": None, "deployments": deployments}
    (root / "prefect.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def api(server: PrefectServer, method: str, path: str, body: object | None = None) -> Any:
    request = urllib.request.Request(
        f"{server.url}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def cli(server: PrefectServer, cwd: Path, *args: str) -> str:
    done = server.prefect(*args, cwd=cwd)
    assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is `directory` (flow runs a worker started there)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) == directory:
                found.append(int(pid))
        except OSError:
            continue
    return found


def started_by(log: str, run_id: str) -> bool:
    """The worker's log shows it submitting the run and the server not turning it away."""
    submitted = log.count(f"submitting flow run '{run_id}'")
    return submitted > log.count(f"Aborted submission of flow run '{run_id}'")


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


@pytest.mark.timeout(1200)
def test_three_systems_on_postgres_with_two_workers(
    postgres: Postgres, sshd: Sshd, tmp_path: Path
) -> None:
    configs = {system: system_site(tmp_path, sshd, system) for system in SYSTEMS}
    checkout = project(tmp_path, configs)
    home = tmp_path / "prefect-home"
    home.mkdir()
    with running_server(home, PREFECT_API_DATABASE_CONNECTION_URL=postgres.url) as server:
        tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'flow_run'"
        assert postgres.sql(tables, "prefect") == "1\n", "the server keeps its tables in PostgreSQL"
        cli(server, checkout, "work-pool", "create", "zimage", "--type", "process")
        cli(server, checkout, "--no-prompt", "deploy", "--all")
        workers, logs = [], []
        try:
            for n in (1, 2):
                logs.append(tmp_path / f"worker-{n}.log")
                with logs[-1].open("wb") as out:
                    workers.append(subprocess.Popen(
                        ["prefect", "worker", "start", "--pool", "zimage", "--limit", "2", "--name", f"worker-{n}"],
                        cwd=checkout, env=server.env(), stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    ))
            runs: dict[str, str] = {}  # flow run id -> system
            for system in ("SYSA", "SYSA", "SYSB", "SYSC"):
                printed = cli(server, checkout, "deployment", "run", f"refresh/refresh-{system}")
                match = re.search(r"UUID:\s*([0-9a-f-]{36})", printed)
                assert match, printed
                runs[match[1]] = system
            deadline = time.monotonic() + 1000
            while time.monotonic() < deadline:
                states = {i: api(server, "GET", f"/flow_runs/{i}")["state"]["type"] for i in runs}
                if all(s in TERMINAL for s in states.values()):
                    break
                time.sleep(3)
            tails = "\n".join(log.read_text()[-3000:] for log in logs)
            assert all(s == "COMPLETED" for s in states.values()), f"{states}\n{tails}"
        finally:
            for worker in workers:
                stop(worker)

        timed = []
        for run_id, system in runs.items():
            run = api(server, "GET", f"/flow_runs/{run_id}")
            timed.append({"system": system, "start": run["start_time"], "end": run["end_time"], "id": run_id})
        sysa = [r for r in timed if r["system"] == "SYSA"]
        assert not overlap(*sysa), f"two refreshes of SYSA ran at once: {sysa}"
        assert any(overlap(a, b) for a in timed for b in timed if a["system"] < b["system"]), (
            f"runs of different systems never ran at once: {timed}"
        )
        # each run was started by one worker (a worker may be turned away while the slot is taken), and both
        # workers started runs
        texts = [log.read_text() for log in logs]
        started = [{i for i in runs if started_by(text, i)} for text in texts]
        assert sorted(i for s in started for i in s) == sorted(runs), f"{started}\n{tails}"
        assert all(started), f"one worker started no run: {started}\n{tails}"

        # nothing is left: no slot held, no run pending, no flow-run process, no stray file
        limits = api(server, "POST", "/v2/concurrency_limits/filter", {})
        assert limits and all(limit["active_slots"] == 0 for limit in limits), limits
        open_runs = api(server, "POST", "/flow_runs/filter",
                        {"flow_runs": {"state": {"type": {"not_any_": sorted(TERMINAL)}}}})
        assert open_runs == []
        completed = (  # the runs are rows of the PostgreSQL database
            "SELECT count(*) FROM flow_run JOIN flow ON flow.id = flow_run.flow_id "
            "WHERE flow.name = 'refresh' AND flow_run.state_type = 'COMPLETED'"
        )
        assert postgres.sql(completed, "prefect") == "4\n"
    assert processes_in(checkout) == []
    for system in SYSTEMS:
        staged = sorted(p.name for p in (tmp_path / "storage" / "zos" / system).rglob("*") if p.is_file())
        volumes = [name for name in staged if name.endswith(".gz")]
        assert len(volumes) == 3 * (2 if system == "SYSA" else 1), staged  # two sysres volumes and one data
        assert all(name.endswith((".gz", ".json")) for name in staged), staged
        out = tmp_path / system.lower() / "out"
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [f"{system.lower()}-img.qcow2", f"{system.lower()}-img-data.img", "report.json"]
        )
        assert json.loads((out / "report.json").read_text())["status"] == "succeeded"
