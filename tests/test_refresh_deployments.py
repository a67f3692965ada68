"""`zimage deployments write`: scheduled refresh deployments from sources[].refresh, deployed to a
real Prefect server; the shipped prefect.yaml is what the example config gives, and paused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prefect_server import PrefectServer
from tests.test_deployments import PROJECT_FILES, deployments
from zimage.config import ConfigError, parse_config
from zimage.deployments import BEGIN, END

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zimage.yaml"
SYSTEMS = {
    "SYSA": ("0 2 * * 6", "Asia/Tokyo"),
    "SYSB": ("30 23 * * 0", "Europe/Berlin"),
    "SYSC": ("0 4 1 * *", "America/New_York"),
}


def zimage(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def three_systems() -> dict[str, Any]:
    """The example config with three source systems, each with its components, image and schedule."""
    base = yaml.safe_load(EXAMPLE.read_text())
    source = base["sources"][0]
    doc = {**base, "sources": [], "components": [], "images": []}
    for n, (system, (cron, tz)) in enumerate(SYSTEMS.items()):
        image = f"{system.lower()}-dev"
        doc["sources"].append(
            {
                **source,
                "name": system,
                "host": f"zos{n}.example.com",
                "refresh": {"cron": cron, "timezone": tz, "images": [image]},
            }
        )
        doc["components"].append(
            {
                "name": f"{system.lower()}-sysres",
                "source": system,
                "type": "sysres",
                "volumes": [{"volser": f"RES{n:03d}", "devnum": "0A80", "devtype": "3390-9"}],
            }
        )
        doc["images"].append({**base["images"][0], "name": image, "components": [f"{system.lower()}-sysres"]})
    doc["hosts"] = [
        {
            "name": "zdt-lab1",
            "host": "zdt.example.com",
            "username": "ibmsys1",
            "root": "/z/zimage",
            "owner": "ibmsys1",
            "private_key_file": "~/.ssh/zimage_host",
        }
    ]
    doc["sources"][2]["refresh"]["host"] = "zdt-lab1"  # SYSC goes to an emulator host, the others to IBM Cloud
    return doc


def test_three_systems_give_three_scheduled_deployments_with_their_time_zones(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        if name == "prefect.yaml":
            continue
        src = ROOT / name
        shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "sites.yaml").write_text(yaml.safe_dump(three_systems(), sort_keys=False))
    written = zimage("deployments", "write", "sites.yaml", cwd=project)
    assert written.returncode == 0, written.stderr
    assert "refresh-SYSA (1 schedule(s) in Asia/Tokyo)" in written.stdout
    pool = prefect_server.prefect("work-pool", "create", "zimage", "--type", "process", cwd=project)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = prefect_server.prefect("--no-prompt", "deploy", "--all", cwd=project, timeout=600)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    found = {name: d for name, d in deployments(prefect_server).items() if name.startswith("refresh-")}
    assert sorted(found) == ["refresh-SYSA", "refresh-SYSB", "refresh-SYSC"]
    for system, (cron, tz) in SYSTEMS.items():
        refresh = found[f"refresh-{system}"]
        (schedule,) = refresh["schedules"]
        assert schedule["schedule"]["cron"] == cron and schedule["schedule"]["timezone"] == tz
        assert schedule["active"] is True
        assert schedule["parameters"] == {"image": f"{system.lower()}-dev"}
        host = {"host": "zdt-lab1"} if system == "SYSC" else {}
        assert refresh["parameters"] == {"config": "sites.yaml", "create_instance": False, **host}
        assert f"time zone {tz}" in refresh["description"] and f"`{cron}`" in refresh["description"]
        assert refresh["global_concurrency_limit"]["limit"] == 1, refresh  # runs of one system never overlap
        assert refresh["work_pool_name"] == "zimage"


def test_the_shipped_prefect_yaml_is_what_the_example_gives_and_paused() -> None:
    checked = zimage("deployments", "write", "examples/zimage.yaml", "--check", cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shipped = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    schedules = [s for d in shipped["deployments"] for s in d.get("schedules") or []]
    assert schedules and all(s["active"] is False for s in schedules), "an example schedule would run every week"


def test_writing_replaces_only_the_block_and_a_second_write_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "prefect.yaml"
    shutil.copy(ROOT / "prefect.yaml", target)
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(three_systems(), sort_keys=False))
    before = target.read_text()
    assert zimage("deployments", "write", "sites.yaml", cwd=tmp_path).returncode == 0
    after = target.read_text()

    def outside(text: str) -> tuple[str, str]:
        head, rest = text.split(BEGIN, 1)
        return head, rest.split(END, 1)[1]

    assert outside(after) == outside(before)
    assert {d["name"] for d in yaml.safe_load(after)["deployments"]} >= {"refresh-SYSA", "refresh-SYSB", "refresh-SYSC"}
    assert "refresh-SYSZ25A" not in after
    again = zimage("deployments", "write", "sites.yaml", cwd=tmp_path)
    assert again.returncode == 0 and "unchanged" in again.stdout and target.read_text() == after
    stale = zimage("deployments", "write", "examples/zimage.yaml", "--prefect-yaml", str(target), "--check", cwd=ROOT)
    assert stale.returncode == 1 and "is not what examples/zimage.yaml gives" in stale.stderr


def test_a_hand_written_refresh_deployment_outside_the_block_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "prefect.yaml"
    hand = "  - name: refresh-SYSA\n    entrypoint: flows/refresh.py:refresh\n"
    target.write_text((ROOT / "prefect.yaml").read_text().replace(END + "\n", END + "\n" + hand))
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(three_systems(), sort_keys=False))
    before = target.read_text()
    result = zimage("deployments", "write", "sites.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "refresh-SYSA also appear outside the refresh block" in result.stderr
    assert target.read_text() == before


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"images": ["nope"]}, "sources[0].refresh.images[0]", "no image named 'nope'"),
        ({"images": ["sysb-dev"]}, "sources[0].refresh.images[0]", "has no component from SYSA"),
        ({"timezone": "Asia/Tokio"}, "sources[0].refresh.timezone", "IANA time zone"),
        ({"cron": "0 2 * *"}, "sources[0].refresh.cron", "five fields"),
        ({"host": "zdt-lab9"}, "sources[0].refresh.host", "no host named 'zdt-lab9'"),
        ({"every": "week"}, "sources[0].refresh.every", ""),
    ],
)
def test_a_bad_refresh_schedule_is_named(change: dict[str, Any], path: str, message: str) -> None:
    doc = three_systems()
    doc["sources"][0]["refresh"].update(change)
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(doc))
    assert path in str(info.value) and message in str(info.value)
