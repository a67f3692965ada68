"""`zimage demo` end to end: the outputs checked with qemu-img, e2fsck and debugfs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("qemu-img", "e2fsck", "debugfs")


def zimage(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=True).stdout


def sha256_in_image(image: Path, name: str, scratch: Path) -> str:
    out = scratch / f"dump-{name}"
    subprocess.run(["debugfs", "-R", f"dump /{name} {out}", str(image)], capture_output=True, check=True)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return digest


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    base = tmp_path_factory.mktemp("demo")
    workdir = base / "work"
    args = ("demo", "--workdir", str(workdir), "--volumes", "2", "--cylinders", "12")
    result = zimage(*args, cwd=base, home=base / "ph")
    return workdir, result


def test_demo_outputs(demo_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    workdir, result = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done in" in result.stdout and "zdemo.qcow2" in result.stdout
    out = workdir / "out"
    qcow2, data = out / "zdemo.qcow2", out / "zdemo-data.img"
    check = subprocess.run(["qemu-img", "check", str(qcow2)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(qcow2)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    fsck = subprocess.run(["e2fsck", "-fn", str(data)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "zvolumes" in subprocess.run(["dumpe2fs", "-h", str(data)], capture_output=True, text=True).stdout

    listing = {line.split()[-1]: line.split() for line in debugfs(data, "ls -l /").splitlines() if line.strip()}
    volumes = sorted(p.stem for p in (workdir / "source").glob("*.ckd"))
    assert volumes == ["USR001", "USR002", "ZRES01", "ZRES02"]
    for name in [*volumes, "devmap", ".zosprepared"]:
        assert name in listing, f"{name} missing from the data volume: {sorted(listing)}"
        _inode, _mode, _links, uid, gid, *_ = listing[name]
        assert (uid, gid) == ("999", "999"), f"{name} owned by {uid}:{gid}"
    for name in volumes:
        source = hashlib.sha256((workdir / "source" / f"{name}.ckd").read_bytes()).hexdigest()
        assert sha256_in_image(data, name, tmp_path) == source, f"{name} differs from its source"

    devmap = debugfs(data, "cat /devmap")
    devices = [line.split() for line in devmap.splitlines() if line.startswith("device ")]
    assert sorted(d[4] for d in devices) == sorted(f"/volumes/{v}" for v in volumes)
    assert {d[1] for d in devices} == {"0A80", "0A81", "0A90", "0A91"}
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "succeeded" and sorted(report["volumes-succeeded"]) == volumes


def test_demo_rerun_is_idempotent(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    workdir, first = demo_run
    assert first.returncode == 0
    again = zimage("demo", "--workdir", str(workdir), "--volumes", "2", "--cylinders", "12",
                   cwd=workdir.parent, home=workdir.parent / "ph")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (workdir / "out" / "zdemo.qcow2").exists()


def test_demo_refuses_a_foreign_directory(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    result = zimage("demo", "--workdir", str(foreign), cwd=tmp_path, home=tmp_path / "ph")
    assert result.returncode == 2
    assert "not a zimage demo directory" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
