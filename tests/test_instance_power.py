"""stop-instance and start-instance on the IBM Cloud fake, with a real sshd on loopback standing in
for z/OS UNIX: the shutdown command runs there, and the wait ends when it stops answering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.instance_power import ShutdownFailed, answers
from tests.fakes.ibmcloud import FakeIbmCloud
from tests.support.sshd import Sshd, free_port
from tests.support.wazi_server import WaziServer
from zimage.config import ConfigError, parse_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

FAST = {"poll_seconds": 0.02, "answer_poll_seconds": 0.2, "timeout_minutes": 0.25, "retry_base_seconds": 0.02}


def config(tmp: Path, fake: FakeIbmCloud, zos: dict[str, Any], command: str, timeout_minutes: float = 0.5) -> str:
    doc = {
        "storage": {"host": "localhost", "username": "t", "transport": "local", "root": str(tmp / "staging")},
        "sources": [
            {
                "name": "SYSZT1",
                "host": "localhost",
                "username": "t",
                "transport": "local",
                "extraction": {"command": "true {target}"},
            }
        ],
        "target": {
            "region": "jp-tok",
            "zone": 1,
            "iam_endpoint": fake.url,
            "vpc_endpoint": fake.vpc_url,
            "insecure_http": True,  # the fake serves plain http on loopback
            "cos": {"instance_name": "c", "bucket": "unused", "region": "jp-tok"},
        },
        "components": [
            {
                "name": "zt-sysres",
                "source": "SYSZT1",
                "type": "sysres",
                "volumes": [{"volser": "ZRES01", "devnum": "0A80", "devtype": "3390-1"}],
            }
        ],
        "instances": [{"name": "zdev-1", **zos, "shutdown": {"command": command, "timeout_minutes": timeout_minutes}}],
    }
    path = tmp / "zimage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


@pytest.fixture
def cloud_env(ibmcloud_fake: FakeIbmCloud, monkeypatch: pytest.MonkeyPatch) -> FakeIbmCloud:
    monkeypatch.setenv("IBMCLOUD_API_KEY", ibmcloud_fake.api_key)
    monkeypatch.setenv("RESOURCE_CONTROLLER_URL", ibmcloud_fake.url)
    return ibmcloud_fake


def test_stop_waits_until_zos_no_longer_answers_then_stops_the_instance(
    cloud_env: FakeIbmCloud, wazi_server: WaziServer, tmp_path: Path
) -> None:
    from flows.stop_instance import stop_instance

    zos = Sshd.start(tmp_path / "zos")  # its own sshd: the shutdown stops it
    try:
        # as a site's procedure does: the command returns at once, z/OS goes down a little later
        command = f"(sleep 1.5; kill $(cat {zos.directory}/sshd.pid)) >/dev/null 2>&1 </dev/null & echo stopping"
        summary = stop_instance(config(tmp_path, cloud_env, zos.endpoint(), command), "zdev-1", **FAST)
        assert zos.process.wait(timeout=10) is not None
    finally:
        zos.stop()
    assert not answers(zos.host, zos.port)
    assert summary["shutdown"]["exit_status"] == 0 and summary["shutdown"]["stdout_tail"] == "stopping"
    assert summary["shutdown"]["silent_after_seconds"] >= 1.5  # it waited for z/OS, not just the command
    assert summary["warnings"] == [] and summary["power"]["changed"] is True
    assert wazi_server.status() == "stopped" and wazi_server.actions() == ["stop"]
    assert wazi_server.leftovers() == []


def test_a_failing_shutdown_command_stops_nothing_and_says_so(
    cloud_env: FakeIbmCloud, wazi_server: WaziServer, sshd: Sshd, tmp_path: Path
) -> None:
    from flows.stop_instance import stop_instance

    path = config(tmp_path, cloud_env, sshd.endpoint(), "echo 'CICS did not stop' >&2; exit 4")
    with pytest.raises(
        ShutdownFailed,
        match=r"exited with status 4: CICS did not stop; the server was not stopped "
        r"and is still running",
    ):
        stop_instance(path, "zdev-1", **FAST)
    assert wazi_server.status() == "running" and wazi_server.actions() == []


def test_zos_still_answering_when_the_time_is_up_stops_nothing(
    cloud_env: FakeIbmCloud, wazi_server: WaziServer, sshd: Sshd, tmp_path: Path
) -> None:
    from flows.stop_instance import stop_instance

    path = config(tmp_path, cloud_env, sshd.endpoint(), "true", timeout_minutes=0.04)
    with pytest.raises(
        ShutdownFailed,
        match=r"still answers \d+ s after the shutdown command .*not stopped and is "
        r"still running",
    ):
        stop_instance(path, "zdev-1", **FAST)
    assert wazi_server.status() == "running" and wazi_server.actions() == []
    assert answers(sshd.host, sshd.port)


def test_a_shutdown_command_that_hangs_times_out_and_stops_nothing(
    cloud_env: FakeIbmCloud, wazi_server: WaziServer, sshd: Sshd, tmp_path: Path
) -> None:
    from flows.stop_instance import stop_instance

    path = config(tmp_path, cloud_env, sshd.endpoint(), "sleep 30", timeout_minutes=0.03)
    with pytest.raises(ShutdownFailed, match=r"did not finish within 0.03 min"):
        stop_instance(path, "zdev-1", **FAST)
    assert wazi_server.status() == "running" and wazi_server.actions() == []


def test_an_unknown_host_key_refuses_the_shutdown(
    cloud_env: FakeIbmCloud, wazi_server: WaziServer, sshd: Sshd, tmp_path: Path
) -> None:
    from flows.stop_instance import stop_instance

    wrong = sshd.wrong_known_hosts(tmp_path / "known_hosts")
    path = config(tmp_path, cloud_env, sshd.endpoint(known_hosts_file=str(wrong)), "true")
    with pytest.raises(ShutdownFailed, match=r"cannot run the shutdown command .*does not match"):
        stop_instance(path, "zdev-1", **FAST)
    assert wazi_server.actions() == []


def test_force_skips_zos_with_a_warning_and_start_brings_it_back(
    cloud_env: FakeIbmCloud, wazi_server: WaziServer, tmp_path: Path
) -> None:
    from flows.start_instance import start_instance
    from flows.stop_instance import stop_instance

    unreachable = {
        "host": "127.0.0.1",
        "port": free_port(),
        "username": "IBMUSER",
        "private_key_file": str(tmp_path / "no-key"),
        "known_hosts_file": str(tmp_path / "no-hosts"),
    }
    path = config(tmp_path, cloud_env, unreachable, "/u/ibmuser/bin/shutdown.sh")
    stopped = stop_instance(path, "zdev-1", force=True, **FAST)
    assert stopped["shutdown"] is None and "shutdown was skipped (force)" in stopped["warnings"][0]
    assert wazi_server.status() == "stopped"
    again = stop_instance(path, "zdev-1", **FAST)  # already stopped: no shutdown, no action
    assert again["was"] == "stopped" and again["power"]["changed"] is False

    fast = {k: v for k, v in FAST.items() if k != "answer_poll_seconds"}
    started = start_instance(path, "zdev-1", **fast)
    assert started["was"] == "stopped" and started["power"]["changed"] is True
    assert start_instance(path, "zdev-1", **fast)["power"]["changed"] is False
    assert wazi_server.status() == "running" and wazi_server.actions() == ["stop", "start"]
    assert wazi_server.leftovers() == []


def test_an_instance_not_in_the_cloud_is_named(cloud_env: FakeIbmCloud, tmp_path: Path) -> None:
    from flows.stop_instance import stop_instance

    path = config(tmp_path, cloud_env, {"host": "127.0.0.1", "username": "u", "private_key_file": "/k"}, "true")
    with pytest.raises(Exception, match=r"instance 'zdev-1'.*no instance of that name"):
        stop_instance(path, "zdev-1", **FAST)
    with pytest.raises(KeyError, match=r"no instance named 'zdev-9' in the config \(known: zdev-1\)"):
        stop_instance(path, "zdev-9", **FAST)


def test_instances_are_validated_with_the_rest_of_the_config(cloud_env: FakeIbmCloud, tmp_path: Path) -> None:
    path = Path(config(tmp_path, cloud_env, {"host": "h", "username": "u", "private_key_file": "/k"}, "true"))
    doc = yaml.safe_load(path.read_text())
    good = doc["instances"][0]
    doc["instances"] = [
        good,
        {**good, "shutdown": {"command": "a\nb", "timeout_minutes": 0}},
        {**good, "name": "Bad_Name", "private_key_file": None, "shutdwn": {}},
    ]
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(doc))
    text = str(info.value)
    assert "instances[1].shutdown.command: the shutdown command must be one non-empty line" in text
    assert "instances[1].shutdown.timeout_minutes" in text
    assert "instances[2].name" in text and "unknown key 'shutdwn'" in text
    doc["instances"] = [good, good]
    with pytest.raises(ConfigError, match=r"instances\[1\].name: duplicate name"):
        parse_config(yaml.safe_dump(doc))


def test_the_command_line_stops_and_starts_and_names_an_unknown_instance(
    cloud_env: FakeIbmCloud, wazi_server: WaziServer, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    unreachable = {"host": "127.0.0.1", "port": free_port(), "username": "IBMUSER", "private_key_file": "/k"}
    path = config(tmp_path, cloud_env, unreachable, "/u/ibmuser/bin/shutdown.sh")
    runner = CliRunner()
    unknown = runner.invoke(app, ["run", "stop-instance", "--config", path, "--instance", "zdev-9"])
    assert unknown.exit_code == 2 and "no instance named 'zdev-9' in the config" in unknown.output
    refused = runner.invoke(app, ["run", "stop-instance", "--config", path, "--instance", "zdev-1"])
    assert refused.exit_code == 1 and "ShutdownFailed" in refused.output and "still running" in refused.output
    assert wazi_server.status() == "running" and wazi_server.actions() == []
    forced = runner.invoke(app, ["run", "stop-instance", "--config", path, "--instance", "zdev-1", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "shutdown was skipped (force)" in forced.output and wazi_server.status() == "stopped"
    started = runner.invoke(app, ["run", "start-instance", "--config", path, "--instance", "zdev-1"])
    assert started.exit_code == 0, started.output
    assert wazi_server.status() == "running" and wazi_server.actions() == ["stop", "start"]
