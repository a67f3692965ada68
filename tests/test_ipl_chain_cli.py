"""`zimage ipl check` end to end: the staged generation on a real sshd playing the storage server, the
data mover run there over SSH (host key verified), findings and exit codes as DESIGN.md §11 says;
`zimage volume ls|cat` read what Hercules dasdls and dasdcat read."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.support.ipl_system import IEASYM00, System, build_system
from tests.support.pds import DASDLOAD
from tests.support.sshd import Sshd
from zimage.manifests import ComponentManifest, StagedVolume

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(DASDLOAD is None, reason="Hercules dasdload is not installed (Debian hercules)"),
]
GEN = "2024-05-01_10_00_00"


def stage(system: System, root: Path, generation: str = GEN) -> None:
    staged = root / "zos" / "SYSA" / "volumes"
    files = system.stage(staged, generation)
    now = datetime(2024, 5, 1, 10, tzinfo=UTC)
    volumes = []
    for devnum, volser in system.devnums.items():
        f = next(x for x in files if x.volser == volser)
        gz = Path(f.path).read_bytes()
        plain = system.plain[volser].read_bytes()
        volumes.append(
            StagedVolume(
                volser=volser,
                devnum=devnum,
                devtype="3390-1",
                file_name=Path(f.path).name,
                bytes=len(plain),
                gz_bytes=len(gz),
                sha256=hashlib.sha256(plain).hexdigest(),
                gz_sha256=hashlib.sha256(gz).hexdigest(),
                started=now,
                finished=now,
            )
        )
    manifest = ComponentManifest(
        component="zos25-sysres", system="SYSA", type="sysres", generation=generation, created=now, volumes=volumes
    )
    (staged / f"zos25-sysres_{generation}.manifest.json").write_bytes(manifest.to_json())


def config(sshd: Sshd, tmp: Path, root: Path, loadparm: str = "0A82CS") -> Path:
    doc = {
        "storage": sshd.endpoint(root=str(root)),
        "sources": [
            {
                "name": "SYSA",
                **sshd.endpoint(),
                "extraction": {"command": "true {target}"},
                "parmlib": {
                    "ieasym": "SYS1.PARMLIB(IEASYM00)",
                    "tcpip_profile": "TCPIP.PROFILE(PROFILE)",
                    "tcpdata": "TCPIP.TCPPARMS(TCPDATA)",
                },
            }
        ],
        "target": {
            "region": "jp-tok",
            "zone": 1,
            "cos": {"instance_name": "cos", "bucket": "zimage-test", "region": "jp-tok"},
        },
        "components": [
            {
                "name": "zos25-sysres",
                "source": "SYSA",
                "type": "sysres",
                "volumes": [
                    {"volser": "MN25S2", "devnum": "0A80", "devtype": "3390-1"},
                    {"volser": "MN25U1", "devnum": "0A81", "devtype": "3390-1"},
                    {"volser": "MN25T1", "devnum": "0A82", "devtype": "3390-1"},
                ],
            }
        ],
        "images": [
            {"name": "zos25-dev", "components": ["zos25-sysres"], "ipl": {"device": "0A80", "loadparm": loadparm}}
        ],
    }
    path = tmp / "zimage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def zimage(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["zimage", *argv], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def test_ipl_check_runs_on_the_storage_server_and_passes_a_good_chain(sshd: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "staging"
    stage(build_system(tmp_path / "sys"), root)
    result = zimage("ipl", "check", "--config", str(config(sshd, tmp_path, root)), "--image", "zos25-dev")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "zimage ipl: LOADCS: MN25T1:SYS0.IPLPARM(LOADCS) (IODF device 0A82)" in result.stderr
    assert "zimage ipl: MN25S2: read " in result.stderr
    # the mover ran there and left nothing behind: only the staged files remain
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted(
        [f"{v}_{GEN}.gz" for v in ("MN25S2", "MN25T1", "MN25U1")] + [f"zos25-sysres_{GEN}.manifest.json"]
    )


def test_ipl_check_reports_findings_with_volume_data_set_member_and_line(sshd: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "staging"
    broken = IEASYM00.replace("SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')", "SYMDEF(&DEFAULTROUTEADDR.='172.26.1')")
    stage(build_system(tmp_path / "sys", ieasym00=broken), root)
    result = zimage("ipl", "check", "--config", str(config(sshd, tmp_path, root)), "--image", "zos25-dev")
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("MN25S2:SYS1.PARMLIB(IEASYM00):4: error: &DEFAULTROUTEADDR: '172.26.1' is not")


def test_ipl_check_exit_2_when_a_volume_or_the_generation_cannot_be_read(sshd: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "staging"
    cfg = config(sshd, tmp_path, root)
    result = zimage("ipl", "check", "--config", str(cfg), "--image", "zos25-dev")
    assert result.returncode == 2 and "has no verified extraction" in result.stderr
    system = build_system(tmp_path / "sys")
    stage(system, root)
    (root / "zos" / "SYSA" / "volumes" / f"MN25U1_{GEN}.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(40))
    result = zimage("ipl", "check", "--config", str(cfg), "--image", "zos25-dev")
    assert result.returncode == 2
    assert "MN25U1:VTOC:1: error: " in result.stdout and "truncated or changed" in result.stdout


def test_volume_ls_and_cat_read_what_dasdls_and_dasdcat_read(tmp_path: Path) -> None:
    system = build_system(tmp_path / "sys")
    plain = system.plain["MN25S2"]
    packed = system.stage(tmp_path / "staged")[0].path
    for file in (str(plain), packed):
        listing = zimage("volume", "ls", file)
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert lines[0] == "VOLSER MN25S2: 2 data set(s)"
        ours = [line.split()[:5] for line in lines[2:]]
        theirs = subprocess.run(["dasdls", "-info", str(plain)], capture_output=True, text=True).stdout
        expected = [[f[0], f[2], f[3], f[4], f[5]] for f in (line.split() for line in theirs.splitlines()[1:])]
        assert ours == expected
        text = zimage("volume", "cat", file, "SYS1.PARMLIB(IEASYM00)")
        assert text.returncode == 0, text.stderr
        raw = subprocess.run(["dasdcat", "-i", str(plain), "SYS1.PARMLIB/IEASYM00:a"], capture_output=True).stdout
        chunks = [raw[i : i + 80].decode().rstrip() for i in range(0, len(raw), 80)]
        assert text.stdout.splitlines() == chunks
    missing = zimage("volume", "cat", str(plain), "SYS1.PARMLIB(NOPE)")
    assert missing.returncode == 2 and "SYS1.PARMLIB(NOPE): no such member" in missing.stderr
