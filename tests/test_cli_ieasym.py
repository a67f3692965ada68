"""`zimage ieasym check|render` through typer's runner, on member files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.ieasym import app
from tests.test_ieasym import GOOD_DEFS, records
from zimage.ebcdic import ibm1047_decode, ibm1047_encode

runner = CliRunner()

PROFILE = "HOME\n  &HOMEIPADDRESS1 OSALINK\nBEGINRoutes\nROUTE DEFAULT &DEFAULTROUTEADDR OSALINK MTU 1492\nENDRoutes\n"
TCPDATA = "NSINTERADDR &NAMESERVERADDR1\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


@pytest.fixture
def good(tmp_path: Path) -> list[str]:
    return [
        "--ieasym", str(write(tmp_path, "IEASYM00", records(["SYSDEF SYSNAME(A)", *GOOD_DEFS]))),
        "--profile", str(write(tmp_path, "PROFILE", PROFILE)),
        "--tcpdata", str(write(tmp_path, "TCPDATA", TCPDATA)),
    ]  # fmt: skip


def test_check_clean_members_exits_0(good: list[str]) -> None:
    result = runner.invoke(app, ["check", *good])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_check_with_warnings_only_exits_0(tmp_path: Path) -> None:
    lines = ["SYSDEF SYSNAME(A)", *GOOD_DEFS, "SYSDEF SYMDEF(&HOMEIPADDRESS1.='1.2.3.4')"]
    ieasym = write(tmp_path, "IEASYM00", records(lines))
    result = runner.invoke(app, ["check", "--ieasym", str(ieasym)])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"{ieasym}:5: warning: &HOMEIPADDRESS1 is defined twice")


def test_check_errors_exit_1_in_text_and_json(tmp_path: Path, good: list[str]) -> None:
    profile = write(tmp_path, "PROFILE", PROFILE.replace("&HOMEIPADDRESS1", "10.1.1.2"))
    args = [*good[:2], "--profile", str(profile)]
    result = runner.invoke(app, ["check", *args])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{profile}:2: error: the HOME address of the primary link OSALINK is the literal address 10.1.1.2; "
        "use &HOMEIPADDRESS1. (Wazi aaS sets it to 172.26.1.2)"
    ]
    result = runner.invoke(app, ["check", *args, "--format", "json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["errors"] == 1
    assert document["findings"][0]["file"] == str(profile) and document["findings"][0]["line"] == 2


def test_check_unreadable_input_exits_2(tmp_path: Path, good: list[str]) -> None:
    missing = tmp_path / "NOPE"
    result = runner.invoke(app, ["check", *good, "--tcpdata", str(missing)])
    assert result.exit_code == 2
    assert f"{missing}: cannot read" in result.stderr and result.stdout == ""
    result = runner.invoke(app, ["check", "--ieasym", str(tmp_path)])  # a directory
    assert result.exit_code == 2


def test_check_requires_ieasym_and_a_known_format(good: list[str]) -> None:
    assert runner.invoke(app, ["check"]).exit_code == 2
    assert runner.invoke(app, ["check", *good, "--format", "xml"]).exit_code == 2


def test_render_to_file_keeps_ebcdic_fixed_records(tmp_path: Path) -> None:
    text = records(["SYSDEF    SYSNAME(SYSA)", GOOD_DEFS[0]], newline=None)
    source = write(tmp_path, "IEASYM00", ibm1047_encode(text))
    out = tmp_path / "out" / "IEASYM00"
    out.parent.mkdir()
    result = runner.invoke(
        app,
        ["render", "--ieasym", str(source), "--set", "HOMEIPADDRESS1=172.26.1.2",
         "--set", "&DEFAULTROUTEADDR.=172.26.1.1", "--set", "NAMESERVERADDR1=172.26.1.1", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    raw = out.read_bytes()
    assert len(raw) == 4 * 80 and b"\n" not in raw
    rendered = ibm1047_decode(raw)
    assert rendered[80:160] == "          SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')".ljust(72) + "00000200"
    assert "SYMDEF(&NAMESERVERADDR1.='172.26.1.1')" in rendered[240:]
    check = runner.invoke(app, ["check", "--ieasym", str(out)])
    assert check.exit_code == 0 and check.stdout == ""


def test_render_to_stdout(tmp_path: Path) -> None:
    text = records(["SYSDEF", *GOOD_DEFS])
    source = write(tmp_path, "IEASYM00", text)
    result = runner.invoke(app, ["render", "--ieasym", str(source), "--set", "HOMEIPADDRESS1=192.168.10.21"])
    assert result.exit_code == 0
    assert result.stdout == text
    result = runner.invoke(app, ["render", "--ieasym", str(source), "--set", "NAMESERVERADDR1=9.9.9.9"])
    assert result.stdout == text.replace("'192.168.10.53')", "'9.9.9.9')      ")


@pytest.mark.parametrize(
    ("assignment", "code", "message"),
    [
        ("HOMEIPADDRESS1", 2, "expected NAME=VALUE"),
        ("=1.2.3.4", 2, "expected NAME=VALUE"),
        ("HOMEIPADDRESS1=172.26.1", 1, "not an IPv4 address"),
        ("AB=1234", 1, "may be at most 3"),
    ],
)
def test_render_refusals(tmp_path: Path, assignment: str, code: int, message: str) -> None:
    source = write(tmp_path, "IEASYM00", records(["SYSDEF", *GOOD_DEFS]))
    out = tmp_path / "OUT"
    result = runner.invoke(app, ["render", "--ieasym", str(source), "--set", assignment, "-o", str(out)])
    assert result.exit_code == code
    assert message in result.stderr
    assert not out.exists()


def test_render_unreadable_input_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "--ieasym", str(tmp_path / "NOPE"), "--set", "A=1"])
    assert result.exit_code == 2 and "cannot read" in result.stderr
