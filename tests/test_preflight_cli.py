"""`zimage ieasym check --config F --system NAME`: the members a source's parmlib names, read over a
real sshd (files in ASCII and IBM-1047 named by absolute paths), checked as member files are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from flows.cli import app
from tests.support.sshd import Sshd
from tests.test_cli_ieasym import PROFILE
from tests.test_parmlib import ebcdic_lines, source_config, write_members
from tests.test_preflight import Site

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def check(*args: str) -> Result:
    return runner.invoke(app, ["ieasym", "check", *args])


@pytest.fixture
def site(sshd: Sshd, tmp_path: Path) -> Site:
    return Site(sshd, tmp_path)


def test_good_members_over_ssh_exit_0(site: Site, sshd: Sshd) -> None:
    config = site.config([source_config(sshd, write_members(site.tmp / "parmlib"))])
    result = check("--config", config, "--system", "SYSA")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_findings_name_the_member_as_configured_in_text_and_json(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    Path(paths["tcpip_profile"]).write_bytes(ebcdic_lines(PROFILE.replace("&HOMEIPADDRESS1", "10.1.1.2")))
    config = site.config([source_config(sshd, paths)])
    result = check("--config", config, "--system", "SYSA")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{paths['tcpip_profile']}:2: error: the HOME address of the primary link OSALINK is the literal address "
        "10.1.1.2; use &HOMEIPADDRESS1. (Wazi aaS sets it to 172.26.1.2)"
    ]
    result = check("--config", config, "--system", "SYSA", "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert (document["errors"], document["findings"][0]["file"]) == (1, paths["tcpip_profile"])


def test_an_unreadable_member_exits_2_naming_source_member_and_stderr(site: Site, sshd: Sshd) -> None:
    paths = {**write_members(site.tmp / "parmlib"), "tcpdata": str(site.tmp / "NOSUCH")}
    config = site.config([source_config(sshd, paths)])
    result = check("--config", config, "--system", "SYSA")
    assert result.exit_code == 2 and result.stdout == ""
    assert f"source SYSA: cannot read {site.tmp / 'NOSUCH'}: `cat {site.tmp / 'NOSUCH'}`" in result.stderr
    assert "No such file or directory" in result.stderr


def test_a_wrong_host_key_exits_2_saying_host_key(site: Site, sshd: Sshd) -> None:
    wrong = sshd.wrong_known_hosts(site.tmp / "wrong")
    config = site.config([source_config(sshd, write_members(site.tmp / "parmlib"), known_hosts_file=str(wrong))])
    result = check("--config", config, "--system", "SYSA")
    assert result.exit_code == 2
    assert "host key of 127.0.0.1" in result.stderr and "does not match" in result.stderr


def test_missing_entries_are_noted_and_skipped_but_ieasym_is_required(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    config = site.config([source_config(sshd, {"ieasym": paths["ieasym"]})])
    result = check("--config", config, "--system", "SYSA")
    assert result.exit_code == 0, result.output
    assert "source SYSA has no parmlib.tcpdata: the TCPDATA check is skipped" in result.stderr
    assert "no parmlib.tcpip_profile" in result.stderr
    config = site.config([source_config(sshd, {"tcpdata": paths["tcpdata"]})])
    result = check("--config", config, "--system", "SYSA")
    assert result.exit_code == 2
    assert "source SYSA has no parmlib.ieasym: nothing to check" in result.stderr


def test_config_and_option_problems_exit_2(site: Site, sshd: Sshd, tmp_path: Path) -> None:
    config = site.config([source_config(sshd, write_members(site.tmp / "parmlib"))])
    result = check("--config", config, "--system", "SYSB")
    assert result.exit_code == 2 and "no source named 'SYSB'" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(Path(config).read_text().replace("type: sysres", "type: bogus"))
    result = check("--config", str(broken), "--system", "SYSA")
    assert result.exit_code == 2 and "components[0].type" in result.stderr
    assert check("--config", config).exit_code == 2
    assert check("--system", "SYSA").exit_code == 2
    result = check("--config", config, "--system", "SYSA", "--ieasym", config)
    assert result.exit_code == 2 and "not both" in result.stderr
    assert check("--config", str(tmp_path / "absent.yaml"), "--system", "SYSA").exit_code == 2


def test_the_command_does_not_load_prefect(site: Site, sshd: Sshd) -> None:
    config = site.config([source_config(sshd, write_members(site.tmp / "parmlib"))])
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from flows.cli import app\n"
        f"result = CliRunner().invoke(app, ['ieasym', 'check', '--config', {config!r}, '--system', 'SYSA'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
