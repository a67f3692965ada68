"""infra.extraction: rendering the command template, running it, reading its report."""

from __future__ import annotations

import json
import shlex

import pytest

from infra.extraction import (
    ExtractionError,
    StagingTarget,
    agent_volume_path,
    parse_report,
    render_command,
    run_extraction,
)
from zimage.config import Extraction, Source, Volume

SHA = "ab" * 32


def source(command: str, **extra: object) -> Source:
    return Source(
        name="SYSZ25A", transport="local", host="localhost", username="zimage",
        extraction=Extraction(command=command, utility_home=extra.pop("utility_home", "/usr/lpp/wib")), **extra,
    )


VOLUME = Volume(volser="MN25S2", devnum="0a80", devtype="3390-9")
REMOTE = StagingTarget("/home/ftp/WIB/zos/SYSZ25A/volumes/MN25S2_2024-01-02_03_04_05.gz", "10.0.0.5", 2222, "ftpuser1")

ALL = ("{utility_home}/bin/extract {volser} {devnum} {devtype} {target} {target_host} {target_port} "
       "{target_user} {target_path}")


def test_every_placeholder_is_filled() -> None:
    command = render_command(source(ALL), VOLUME, REMOTE)
    assert shlex.split(command) == [
        "/usr/lpp/wib/bin/extract", "MN25S2", "0A80", "3390-9",
        "sftp://ftpuser1@10.0.0.5:2222/home/ftp/WIB/zos/SYSZ25A/volumes/MN25S2_2024-01-02_03_04_05.gz",
        "10.0.0.5", "2222", "ftpuser1", "/home/ftp/WIB/zos/SYSZ25A/volumes/MN25S2_2024-01-02_03_04_05.gz",
    ]


def test_a_local_target_is_the_plain_path() -> None:
    command = render_command(source("x --target {target}"), VOLUME, StagingTarget("/stage/V_1.gz"))
    assert command == "x --target /stage/V_1.gz"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (StagingTarget("/stage/x; rm -rf /"), "target path"),
        (StagingTarget("/stage/$(reboot)"), "target path"),
        (StagingTarget("/stage/../etc/x"), "target path"),
        (StagingTarget("/s/x", "host name; id", 22, "u"), "storage host"),
        (StagingTarget("/s/x", "h", 22, "u`id`"), "storage user"),
    ],
)
def test_values_that_could_change_the_command_are_refused(target: StagingTarget, message: str) -> None:
    with pytest.raises(ExtractionError, match=message) as info:
        render_command(source(ALL), VOLUME, target)
    assert not info.value.retryable


def test_a_dangerous_utility_home_is_refused() -> None:
    with pytest.raises(ExtractionError, match="utility_home"):
        render_command(source(ALL, utility_home="/opt/x y"), VOLUME, REMOTE)


def test_the_agent_volume_path_is_found() -> None:
    assert agent_volume_path("env A=1 zimage-extract --volume /v/MN25S2.ckd --target /s/x.gz") == "/v/MN25S2.ckd"
    assert agent_volume_path("python -m infra.extract_agent --volume=/v/A.ckd --target x") == "/v/A.ckd"
    assert agent_volume_path("/usr/lpp/wib/bin/extract --volser MN25S2 --target x") is None


def report(**change: object) -> bytes:
    return json.dumps({"bytes": 10, "gz_bytes": 5, "sha256": SHA, "gz_sha256": SHA, **change}).encode()


def test_the_last_output_line_is_the_report() -> None:
    parsed = parse_report(b"banner\n" + report(extra="kept out") + b"\n\n", b"", "x")
    assert (parsed.bytes, parsed.gz_bytes, parsed.sha256) == (10, 5, SHA)


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        (b"", "printed no JSON report"),
        (b"done\n", "not a valid JSON report"),
        (report(sha256="xyz"), "not a valid JSON report"),
        (report(bytes=-1), "not a valid JSON report"),
    ],
)
def test_anything_else_is_a_clear_error_with_stderr(stdout: bytes, message: str) -> None:
    with pytest.raises(ExtractionError, match=message) as info:
        parse_report(stdout, b"line 1\nthe real cause\n", "extraction of V")
    assert "the real cause" in str(info.value)


def test_a_non_zero_exit_is_retryable_and_shows_stderr() -> None:
    src = source("echo {target} >/dev/null; echo 'DASD not online' >&2; exit 12")
    with pytest.raises(ExtractionError, match=r"exit status 12;[\s\S]*DASD not online") as info:
        run_extraction(src, VOLUME, StagingTarget("/s/x.gz"))
    assert info.value.retryable


def test_a_command_that_hangs_is_ended_and_retryable() -> None:
    src = source("echo {target}; exec sleep 30")
    # The config allows no timeout under a minute; the test shortens it on a copy.
    src = src.model_copy(update={"extraction": src.extraction.model_copy(update={"timeout_seconds": 0.5})})
    with pytest.raises(ExtractionError, match="did not finish within") as info:
        run_extraction(src, VOLUME, StagingTarget("/s/x.gz"))
    assert info.value.retryable


def test_a_good_report_is_returned() -> None:
    literal = report().decode().replace("{", "{{").replace("}", "}}")  # braces are literal in a template
    src = source(f"echo {{target}} >&2; echo '{literal}'")
    assert run_extraction(src, VOLUME, StagingTarget("/s/x.gz")).gz_bytes == 5
