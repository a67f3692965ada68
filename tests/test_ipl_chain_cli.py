"""`zimage ipl check` end to end: the staged generation on a real sshd playing the storage server, the
data mover run there over SSH (host key verified), findings and exit codes as DESIGN.md §11 says;
`zimage volume ls|cat` read what Hercules dasdls and dasdcat read."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ipl_system import GEN, IEASYM00, build_system, config, stage
from tests.support.pds import DASDLOAD
from tests.support.sshd import Sshd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(DASDLOAD is None, reason="Hercules dasdload is not installed (Debian hercules)"),
]


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
    report = tmp_path / "ipl.md"
    result = zimage(
        "ipl", "check", "--config", str(config(sshd, tmp_path, root)), "--image", "zos25-dev", "--markdown", str(report)
    )
    assert result.returncode == 1, result.stderr
    markdown = report.read_text()
    assert markdown.startswith("# IPL chain of zos25-dev: error")
    assert "| MN25S2 | " in markdown and "`MN25S2:SYS1.PARMLIB(IEASYM00):4`" in markdown
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
    assert not [p for p in root.iterdir() if p.name.startswith(".zimage-lookup")]  # removed after the run


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


def test_ipl_check_never_runs_against_a_storage_server_whose_host_key_differs(sshd: Sshd, tmp_path: Path) -> None:
    root = tmp_path / "staging"
    stage(build_system(tmp_path / "sys"), root)
    cfg = config(sshd, tmp_path, root)
    wrong = sshd.wrong_known_hosts(tmp_path / "wrong_known_hosts")
    cfg.write_text(cfg.read_text().replace(str(sshd.known_hosts), str(wrong)))
    result = zimage("ipl", "check", "--config", str(cfg), "--image", "zos25-dev")
    assert result.returncode == 2
    assert "host key" in result.stderr and "does not match" in result.stderr
    assert not [p for p in root.iterdir() if p.name.startswith(".zimage-lookup")]
