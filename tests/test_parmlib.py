"""infra.parmlib: the cat command for data set members and paths, and members read over a real sshd
(files play the members, since a Linux sshd has no data sets), in ASCII and in IBM-1047."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.parmlib import MemberReader, ParmlibError, configured, member_command, missing, read_member
from tests.support.sshd import Sshd, free_port
from tests.test_cli_ieasym import PROFILE, TCPDATA
from tests.test_ieasym import GOOD_DEFS, records
from zimage.config import Parmlib, Source
from zimage.ebcdic import ibm1047_encode
from zimage.symbols import Member, check_members

IEASYM = records(["SYSDEF SYSNAME(SYSA)", *GOOD_DEFS])


def ebcdic_lines(text: str) -> bytes:
    """IBM-1047 with NL (0x15) line ends, as the z/OS shell's cat prints a data set member."""
    return ibm1047_encode(text.replace("\n", "\x85"))


def source_config(sshd: Sshd | None = None, parmlib: dict[str, str] | None = None, **extra: object) -> dict:
    """Config keys of a source on the test sshd (or transport local without one)."""
    ssh = sshd.endpoint() if sshd else {"host": "localhost", "username": "nobody", "transport": "local"}
    return {
        "name": "SYSA",
        **ssh,
        "extraction": {"command": "zimage-extract --volume /dev/{volser} --target {target}"},
        "parmlib": parmlib or {},
        **extra,
    }


def source(sshd: Sshd | None = None, parmlib: dict[str, str] | None = None, **extra: object) -> Source:
    return Source.model_validate(source_config(sshd, parmlib, **extra))


def write_members(directory: Path) -> dict[str, str]:
    """Members as files: IEASYM00 in ASCII, PROFILE and TCPDATA in IBM-1047 (as a source without
    automatic conversion would send them); returns the parmlib keys."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "IEASYM00").write_text(IEASYM)
    (directory / "PROFILE").write_bytes(ebcdic_lines(PROFILE))
    (directory / "TCPDATA").write_bytes(ebcdic_lines(TCPDATA))
    return {"ieasym": str(directory / "IEASYM00"), "tcpip_profile": str(directory / "PROFILE"),
            "tcpdata": str(directory / "TCPDATA")}


# --- the command ---------------------------------------------------------------------------------


def shell_words(command: str) -> list[str]:
    """The words a POSIX shell makes of `command` (with cat swapped for printf, which echoes them)."""
    assert command.startswith("cat ")
    script = "printf '%s\\n' " + command.removeprefix("cat ")
    return subprocess.run(["sh", "-c", script], check=True, capture_output=True, text=True).stdout.splitlines()


def test_data_set_member_command_is_cat_of_the_quoted_data_set_name() -> None:
    assert member_command("SYS1.PARMLIB(IEASYM00)") == "cat \"//'SYS1.PARMLIB(IEASYM00)'\""
    assert shell_words(member_command("SYS1.PARMLIB(IEASYM00)")) == ["//'SYS1.PARMLIB(IEASYM00)'"]


@pytest.mark.parametrize("name", ["SYS1.$PARM.X-Y(IEASYM00)", "USER.#TCP@.PROFILE($PROF)", "TCPIP.TCPPARMS(TCPDATA)"])
def test_every_data_set_name_character_reaches_cat_unchanged(name: str) -> None:
    command = member_command(name)
    assert shell_words(command) == [f"//'{name}'"]
    if "$" in name:  # a bare $ inside double quotes would be expanded by the shell
        assert "\\$" in command


@pytest.mark.parametrize(
    "name",
    [
        "sys1.parmlib(ieasym00)",  # the config upper-cases; this function takes what it is given
        "SYS1.PARMLIB(IEASYM00);rm -rf /",
        "SYS1.PARMLIB(IEASYM00)'\"",
        "SYS1.PARMLIB",
        "SYS1.PARMLIB(TOOLONGNAME)",
        "SYS1..PARMLIB(IEASYM00)",
        "SYS1.PARMLIB(`id`)",
    ],
)
def test_anything_but_a_data_set_member_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a data set member name"):
        member_command(name)


def test_a_path_is_one_shell_word_whatever_it_holds() -> None:
    path = "/u/sys prog/it's \"$HOME\" `id`;x"
    assert member_command(path).startswith("cat ")
    assert shell_words(member_command(path)) == [path]


def test_the_config_upper_cases_members_and_lists_what_is_missing() -> None:
    parmlib = Parmlib(ieasym="sys1.parmlib(ieasym00)", tcpdata="/etc/tcpdata")
    assert configured(parmlib) == {"ieasym": "SYS1.PARMLIB(IEASYM00)", "tcpdata": "/etc/tcpdata"}
    assert missing(parmlib) == ["tcpip_profile"]


# --- reading over SSH ----------------------------------------------------------------------------


@pytest.mark.integration
def test_members_read_over_ssh_come_back_byte_for_byte_in_both_encodings(sshd: Sshd, tmp_path: Path) -> None:
    paths = write_members(tmp_path / "parmlib")
    with MemberReader(source(sshd, paths)) as reader:
        raw = {key: reader.read(path) for key, path in paths.items()}
    assert raw["ieasym"] == IEASYM.encode()
    assert raw["tcpip_profile"] == ebcdic_lines(PROFILE)
    assert raw["tcpdata"] == ebcdic_lines(TCPDATA)
    members = [Member(name=paths[k], text=raw[k]) for k in ("ieasym", "tcpip_profile", "tcpdata")]
    assert members[1].text == PROFILE and members[2].text == TCPDATA  # IBM-1047 decoded, NL -> \n
    assert check_members(*members) == []


@pytest.mark.integration
def test_fixed_records_in_ibm1047_without_line_ends_are_decoded(sshd: Sshd, tmp_path: Path) -> None:
    member = tmp_path / "IEASYM01"
    member.write_bytes(ibm1047_encode(records(["SYSDEF SYSNAME(SYSA)", *GOOD_DEFS], newline=None)))
    raw = read_member(source(sshd), str(member))
    assert raw == member.read_bytes()
    assert Member(name="IEASYM01", text=raw).text == records(["SYSDEF SYSNAME(SYSA)", *GOOD_DEFS], newline=None)


@pytest.mark.integration
def test_a_path_with_blanks_and_quotes_is_read(sshd: Sshd, tmp_path: Path) -> None:
    member = tmp_path / "it's a \"member\" $X"
    member.write_bytes(b"NSINTERADDR &NAMESERVERADDR1\n")
    assert read_member(source(sshd), str(member)) == member.read_bytes()


@pytest.mark.integration
def test_a_missing_member_names_the_source_the_member_and_stderr(sshd: Sshd, tmp_path: Path) -> None:
    absent = str(tmp_path / "NOSUCH")
    with pytest.raises(ParmlibError) as caught:
        read_member(source(sshd), absent)
    message = str(caught.value)
    assert message.startswith(f"source SYSA: cannot read {absent}: `cat {absent}` on ")
    assert "exited with status 1" in message and "No such file or directory" in message
    assert not caught.value.retryable


@pytest.mark.integration
def test_a_data_set_member_on_a_host_without_data_sets_reports_cat_s_complaint(sshd: Sshd) -> None:
    with pytest.raises(ParmlibError, match=r"cannot read SYS1\.PARMLIB\(IEASYM00\): `cat \"//'SYS1") as caught:
        read_member(source(sshd), "SYS1.PARMLIB(IEASYM00)")
    assert "No such file" in str(caught.value)


@pytest.mark.integration
def test_a_wrong_host_key_is_refused_and_not_retryable(sshd: Sshd, tmp_path: Path) -> None:
    wrong = sshd.wrong_known_hosts(tmp_path / "known_hosts")
    with pytest.raises(ParmlibError, match=r"source SYSA: cannot read /etc/hostname: host key of .* does not") as c:
        read_member(source(sshd, known_hosts_file=str(wrong)), "/etc/hostname")
    assert not c.value.retryable


@pytest.mark.integration
def test_a_closed_port_is_a_retryable_error_naming_the_host(sshd: Sshd) -> None:
    port = free_port()
    with pytest.raises(ParmlibError, match=rf"source SYSA: cannot read /etc/hostname: .*@127\.0\.0\.1:{port}") as c:
        read_member(source(sshd, port=port), "/etc/hostname")
    assert c.value.retryable


# --- transport local -----------------------------------------------------------------------------


def test_transport_local_reads_the_file_directly(tmp_path: Path) -> None:
    paths = write_members(tmp_path)
    local = source(parmlib=paths)
    assert read_member(local, paths["tcpdata"]) == ebcdic_lines(TCPDATA)
    with pytest.raises(ParmlibError, match=r"source SYSA: cannot read .*/NOPE: cannot read .*No such file"):
        read_member(local, str(tmp_path / "NOPE"))
    with pytest.raises(ParmlibError, match="only over SSH"):
        read_member(local, "SYS1.PARMLIB(IEASYM00)")
