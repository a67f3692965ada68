"""deploy-host when things go wrong: the orchestrator or the host-side process killed in the middle of
a deploy (current stays on the old, intact set; a re-run completes it), and bad inputs refused with a
clear error before anything is written on the host (nothing left behind, no pull key left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.deploy_host import deploy_host
from infra import host as hosts
from infra.configfile import load_config
from infra.host import NoPython
from infra.ssh import HostKeyError
from tests.support.host_site import (
    CYLINDERS,
    HOST,
    IMAGE,
    VOLUMES,
    Cli,
    HostSite,
    fill_random,
    run_cli,
    sha256,
    start_cli,
    start_site,
)
from tests.support.pds import Dataset, load_volume
from tests.test_retry import task_runs_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

BIG = 40 << 20  # random bytes per volume: the transfer lasts long enough to be killed in the middle


def _big_volumes(directory: Path) -> None:
    for seed, volser in enumerate(("ZRES01", "WORK01", "WORK02")):
        path = load_volume(directory / f"{volser}.ckd", volser, [Dataset(f"ZT.{volser}.DATA", dsorg="PS", tracks=2)],
                           cylinders=CYLINDERS * 4)  # fmt: skip
        fill_random(path, seed, BIG)


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[HostSite]:
    site = start_site(tmp_path_factory.mktemp("host-faults"), _big_volumes, VOLUMES, cylinders=CYLINDERS * 4)
    try:
        yield site
    finally:
        site.stop()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _host_movers(site: HostSite) -> list[int]:
    """pids of data movers running as deploy-host under this site's host sshd (this machine plays
    the host; the movers of another test run on the machine are not this test's to kill)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not (entry.name.isdigit() and b"\0zimage-deploy-host\0" in (entry / "cmdline").read_bytes()):
                continue
            pid = int(entry.name)
            while pid > 1 and pid != site.host.process.pid:
                pid = _parent(pid)
            if pid == site.host.process.pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
    return found


def _wait_for_part(site: HostSite, cli: Cli, timeout: float = 240) -> Path:
    """The first volume file being written in a new set (its .part), while the deploy runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for part in (site.image_dir / "sets").glob("*/*.part"):
            if part.stat().st_size > 0:
                return part
        if cli.proc.poll() is not None:
            raise AssertionError(f"the deploy ended before writing: {cli.wait()}")
        time.sleep(0.01)
    raise AssertionError("no volume was being written")


def _intact(site: HostSite, current: str) -> None:
    """`current` still points at `current`, whose files have the sha256 its zimage-set.json records."""
    assert site.current() == current
    document = json.loads((site.image_dir / "current" / "zimage-set.json").read_text())
    for vol in document["volumes"]:
        assert sha256(site.image_dir / "current" / vol["volser"]) == vol["deployed_sha256"]


def _wait_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "the host-side mover is still running"


def _change(site: HostSite, seed: int, generation: str) -> None:
    for volser in ("WORK01", "WORK02"):
        fill_random(site.source(volser), seed + len(volser), BIG)
    site.extract(generation, ["zt-data"])


def test_orchestrator_killed_mid_deploy_leaves_current_intact_and_a_rerun_completes(fault_site: HostSite) -> None:
    site = fault_site
    deploy_host(site.config(), IMAGE, HOST)
    old = site.current()
    _change(site, 100, "2024-06-02_10_00_00")
    cli = start_cli(site.root, "run", "deploy-host", "--config", site.config(), "--image", IMAGE, "--host", HOST)
    try:
        part = _wait_for_part(site, cli)
        movers = _host_movers(site)
        assert movers, "no host-side mover under the site's sshd while a volume is written"
        cli.kill()
    finally:
        cli.reap()
    _intact(site, old)
    # the host-side mover notices that its orchestrator is gone and stops; current is still untouched
    _wait_gone(movers)
    _intact(site, old)
    assert part.parent.name != old.rsplit("/", 1)[-1]
    stale = site.pull_keys()
    assert len(stale) == 1 and 'restrict,from="127.0.0.1",expiry-time="' in stale[0]
    assert 'command="internal-sftp -R ' in stale[0]

    result = deploy_host(site.config(), IMAGE, HOST)
    assert result["set"] == part.parent.name  # the interrupted set, resumed
    assert site.current() == f"sets/{result['set']}"
    for volser in ("ZRES01", "WORK01", "WORK02"):
        assert sha256(site.image_dir / "current" / volser) == sha256(site.source(volser))
    assert site.pull_keys() == []  # the killed run's key was reaped, this run's removed
    assert not list((site.image_dir / "current").glob("*.part"))


def test_host_side_mover_killed_mid_deploy_fails_clearly_and_a_rerun_completes(fault_site: HostSite) -> None:
    site = fault_site
    deploy_host(site.config(), IMAGE, HOST)
    old = site.current()
    _change(site, 200, "2024-06-03_10_00_00")
    cli = start_cli(site.root, "run", "deploy-host", "--config", site.config(), "--image", IMAGE, "--host", HOST)
    killed = 0
    try:
        part = _wait_for_part(site, cli)
        # the deploy task's retry resumes the set: kill its mover too, so that the run fails
        deadline = time.monotonic() + 240
        while cli.proc.poll() is None and time.monotonic() < deadline:
            for pid in _host_movers(site):
                os.kill(pid, signal.SIGKILL)
                killed += 1
            time.sleep(0.01)
        code, out, err = cli.wait(timeout=10)
    finally:
        cli.reap()
    assert killed >= 2 and code == 1, (killed, out, err)
    # killed while it answered: no answer; killed while it was being sent the mover: the channel closed
    assert f"host {HOST}: the data mover ended without an answer" in err or "failed while the mover ran" in err, err
    _intact(site, old)
    assert site.pull_keys() == []  # the orchestrator lived: its finally removed the key

    result = deploy_host(site.config(), IMAGE, HOST)
    assert result["set"] == part.parent.name and site.current() == f"sets/{result['set']}"
    for volser in ("WORK01", "WORK02"):
        assert sha256(site.image_dir / "current" / volser) == sha256(site.source(volser))


# --- the pull key and the host session, made at the same time ----------------------------------


def _session_of(site: HostSite, **host: object) -> tuple:
    cfg = load_config(site.config("pull.yaml", **host))
    return cfg.host(HOST), cfg.storage


def test_the_pull_key_is_removed_when_the_host_session_cannot_be_made(fault_site: HostSite) -> None:
    wrong = fault_site.host.wrong_known_hosts(fault_site.root / "wrong_host_known_hosts")
    host, storage = _session_of(fault_site, known_hosts_file=str(wrong))
    with (
        pytest.raises(HostKeyError, match=r"host key of 127\.0\.0\.1:\d+ does not match"),
        hosts.pulling_session(host, storage, "127.0.0.1", IMAGE),
    ):
        raise AssertionError("a session to a host whose key does not match")
    assert fault_site.pull_keys() == []


def test_the_pull_key_is_removed_when_the_storage_connection_dropped_during_the_run(fault_site: HostSite) -> None:
    host, storage = _session_of(fault_site)
    with hosts.pulling_session(host, storage, "127.0.0.1", IMAGE) as (session, key):
        assert [k for k in fault_site.pull_keys() if f"run={key.run} " in k]
        assert session.run("true", timeout=30).status == 0
        assert fault_site.storage.kill_sessions() > 0  # the connection kept for removing the key
    assert fault_site.pull_keys() == []


def test_no_host_session_is_left_when_the_storage_server_refuses(fault_site: HostSite) -> None:
    cfg = load_config(fault_site.config("pull.yaml"))
    wrong = fault_site.storage.wrong_known_hosts(fault_site.root / "wrong_storage_known_hosts")
    storage = cfg.storage.model_copy(update={"known_hosts_file": str(wrong)})
    with (
        pytest.raises(HostKeyError, match=r"host key of 127\.0\.0\.1:\d+ does not match"),
        hosts.pulling_session(cfg.host(HOST), storage, "127.0.0.1", IMAGE),
    ):
        raise AssertionError("a pull key on a storage server whose key does not match")
    deadline = time.monotonic() + 10
    while fault_site.host.session_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fault_site.host.session_processes() == []


# --- bad inputs: a clear error before anything is written -----------------------------------------


def _nothing_written(site: HostSite, before: dict[str, str], keys: str) -> None:
    assert site.snapshot() == before
    assert (site.storage.directory / "authorized_keys").read_text() == keys


def _refused(site: HostSite, match: str, error: type[BaseException] = Exception, **host: object) -> Any:
    """The deploy with hosts[0] changed by `host` fails with `error` and writes nothing; its final state."""
    before, keys = site.snapshot(), (site.storage.directory / "authorized_keys").read_text()
    state = deploy_host(site.config("bad.yaml", **host), IMAGE, HOST, return_state=True)
    with pytest.raises(error, match=match):
        state.result()
    _nothing_written(site, before, keys)
    return state


def test_a_wrong_host_key_is_refused(fault_site: HostSite) -> None:
    wrong = fault_site.host.wrong_known_hosts(fault_site.root / "wrong_known_hosts")
    _refused(fault_site, r"host key of 127\.0\.0\.1:\d+ does not match", HostKeyError, known_hosts_file=str(wrong))


def test_an_owner_that_does_not_exist_is_refused_at_once(fault_site: HostSite) -> None:
    state = _refused(fault_site, "owner 'nosuchuser' does not exist on this host", owner="nosuchuser")
    assert state.is_failed()
    probes = [run for name, run in task_runs_of(state.state_details.flow_run_id).items() if name.startswith("probe")]
    assert [run.run_count for run in probes] == [1]  # a mistake is not tried again


def test_a_host_without_python_is_refused(fault_site: HostSite) -> None:
    _refused(fault_site, r"no Python 3 as '/nonexistent/python3'", NoPython, python="/nonexistent/python3")


def test_a_root_that_is_not_absolute_is_a_config_error(fault_site: HostSite) -> None:
    site = fault_site
    before, keys = site.snapshot(), (site.storage.directory / "authorized_keys").read_text()
    config = site.config("relative.yaml", root="z/zimage")
    done = run_cli("validate", config)
    assert done.returncode == 2 and "hosts[0].root: path 'z/zimage' must be absolute" in done.stderr, done.stderr
    done = run_cli("run", "deploy-host", "--config", config, "--image", IMAGE, "--host", HOST)
    assert done.returncode == 2 and "hosts[0].root" in done.stderr
    _nothing_written(site, before, keys)


def test_a_full_host_disk_is_refused_before_the_first_byte(fault_site: HostSite, tmp_path: Path) -> None:
    site = fault_site
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        before, keys = list(small.rglob("*")), (site.storage.directory / "authorized_keys").read_text()
        with pytest.raises(Exception, match=r"needed in .*/small/z, .* available; nothing was written"):
            deploy_host(site.config("full.yaml", root=str(small / "z")), IMAGE, HOST)
        assert list(small.rglob("*")) == before == []
        assert (site.storage.directory / "authorized_keys").read_text() == keys
    finally:
        subprocess.run(["umount", str(small)], check=True)
