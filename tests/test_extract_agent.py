"""zimage-extract, the reference agent, run as a process (python -m infra.extract_agent)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.extract_agent import AgentError, Target, parse_target
from tests.support.sshd import Sshd
from tests.support.volumes import dasd_volume, synthetic_volume

REPO = Path(__file__).resolve().parents[1]


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "infra.extract_agent", *args], capture_output=True, text=True, env=env, timeout=120
    )


def check_report(result: subprocess.CompletedProcess[str], volume: Path, staged: Path) -> None:
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip())
    raw, gz = volume.read_bytes(), staged.read_bytes()
    assert report["bytes"] == len(raw) and report["sha256"] == hashlib.sha256(raw).hexdigest()
    assert report["gz_bytes"] == len(gz) and report["gz_sha256"] == hashlib.sha256(gz).hexdigest()
    assert gzip.decompress(gz) == raw
    assert not Path(str(staged) + ".part").exists()


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("sftp://ftpuser1@10.0.0.5:2222/home/f/V_1.gz", Target("/home/f/V_1.gz", "10.0.0.5", 2222, "ftpuser1")),
        ("sftp://u@storage.example.com/x/V.gz", Target("/x/V.gz", "storage.example.com", 22, "u")),
        ("file:///stage/V.gz", Target("/stage/V.gz")),
        ("/stage/V.gz", Target("/stage/V.gz")),
    ],
)
def test_targets_are_parsed(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["relative/V.gz", "sftp://host/x.gz", "sftp://u@h:2/../etc/x", "file://other/x",
                                  "sftp://u@h:70000/x", "/stage/"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(AgentError, match="target"):
        parse_target(text)


def test_a_dasd_volume_is_staged_locally(tmp_path: Path) -> None:
    volume = dasd_volume(tmp_path / "ZRES01.ckd", "ZRES01")
    staged = tmp_path / "ZRES01_2024-01-02_03_04_05.gz"
    check_report(agent("--volume", str(volume), "--target", f"file://{staged}"), volume, staged)


@pytest.mark.integration
def test_a_volume_is_pushed_over_sftp(sshd: Sshd, tmp_path: Path) -> None:
    volume = synthetic_volume(tmp_path / "V.img", 3 * 1024 * 1024 + 7, seed=1)
    staged = tmp_path / "out" / "V_2024-01-02_03_04_05.gz"
    staged.parent.mkdir()
    result = agent(
        "--volume", str(volume), "--target", f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{staged}",
        "--identity", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts),
    )
    check_report(result, volume, staged)


@pytest.mark.integration
def test_a_wrong_host_key_stages_nothing(sshd: Sshd, tmp_path: Path) -> None:
    volume = synthetic_volume(tmp_path / "V.img", 100_000)
    out = tmp_path / "out"
    out.mkdir()
    result = agent(
        "--volume", str(volume), "--target", f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{out}/V.gz",
        "--identity", str(sshd.client_key), "--known-hosts", str(sshd.wrong_known_hosts(tmp_path / "kh")),
    )
    assert result.returncode == 1
    assert "host key" in result.stderr and "127.0.0.1" in result.stderr
    assert result.stdout == ""
    assert list(out.iterdir()) == []


def test_a_missing_volume_is_named(tmp_path: Path) -> None:
    result = agent("--volume", str(tmp_path / "NOPE.ckd"), "--target", str(tmp_path / "x.gz"))
    assert result.returncode == 1 and "NOPE.ckd" in result.stderr and result.stdout == ""


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    volume = synthetic_volume(tmp_path / "V.img", 100_000)
    result = agent("--volume", str(volume), "--target", str(tmp_path / "absent-dir" / "V.gz"))
    assert result.returncode == 1 and "absent-dir" in result.stderr
    assert not (tmp_path / "absent-dir").exists()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert agent("--volume", str(tmp_path)).returncode == 2
