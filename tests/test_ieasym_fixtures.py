"""The shared parmlib samples give the findings their README describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from zimage.ebcdic import ibm1047_encode
from zimage.findings import exit_code
from zimage.symbols import WAZI_VALUES, Member, check_members, render_symbols

PARMLIB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "parmlib"

pytestmark = pytest.mark.skipif(not PARMLIB.is_dir(), reason=f"shared fixtures not present at {PARMLIB}")


def members(system: str) -> tuple[Member, Member, Member]:
    folder = PARMLIB / system
    ieasym, profile, tcpdata = (
        Member(name=f"{system}/{name}", text=(folder / name).read_bytes())
        for name in ("IEASYM00", "PROFILE", "TCPDATA")
    )
    return ieasym, profile, tcpdata


def test_fixture_records_are_80_columns_with_sequence_numbers() -> None:
    for system in ("good", "hardcoded"):
        lines = (PARMLIB / system / "IEASYM00").read_text().splitlines()
        assert lines and all(len(line) == 80 and line[72:].isdigit() for line in lines)


def test_good_is_compliant() -> None:
    findings = check_members(*members("good"))
    assert findings == []
    assert exit_code(findings) == 0


def test_hardcoded_gives_the_described_findings() -> None:
    findings = check_members(*members("hardcoded"))
    assert [(f.file, f.line, f.severity, f.symbol) for f in findings] == [
        ("hardcoded/IEASYM00", 1, "error", "DEFAULTROUTEADDR"),  # lacks the definition
        ("hardcoded/IEASYM00", 1, "error", "NAMESERVERADDR1"),
        ("hardcoded/IEASYM00", 5, "warning", "HOMEIPADDRESS1"),  # only under LPARNAME(ZOS25A)
        ("hardcoded/PROFILE", 4, "error", "HOMEIPADDRESS1"),  # HOME 192.168.10.21
        ("hardcoded/PROFILE", 6, "error", "DEFAULTROUTEADDR"),  # ROUTE DEFAULT 192.168.10.129
        ("hardcoded/TCPDATA", 2, "error", "NAMESERVERADDR1"),  # NSINTERADDR 192.168.10.53
    ]
    assert "LPARNAME(ZOS25A)" in findings[2].message and "LPAR name" in findings[2].message
    assert exit_code(findings) == 1


def test_ebcdic_copies_of_the_fixtures_give_the_same_findings() -> None:
    for system in ("good", "hardcoded"):
        ascii_members = members(system)
        ebcdic = [
            Member(name=m.name, text=ibm1047_encode(m.text.replace("\n", "\x85"))) for m in ascii_members
        ]
        assert check_members(*ebcdic) == check_members(*ascii_members)


def test_rendered_hardcoded_ieasym_defines_all_three_unfiltered() -> None:
    ieasym, _, _ = members("hardcoded")
    rendered = render_symbols(ieasym.text, WAZI_VALUES)
    findings = check_members(Member(name="IEASYM00", text=rendered))
    assert [(f.severity, f.symbol) for f in findings] == [("warning", "HOMEIPADDRESS1")]  # the filtered copy
    assert "also defined under SYSDEF HWNAME(P01) LPARNAME(ZOS25A)" in findings[0].message
    assert all(len(line) == 80 for line in rendered.splitlines())
    assert rendered.startswith(ieasym.text.replace("192.168.10.21')", "172.26.1.2')   "))


def test_rendering_good_with_its_own_values_is_the_identity() -> None:
    ieasym, _, _ = members("good")
    values = {
        "HOMEIPADDRESS1": "192.168.10.21",
        "DEFAULTROUTEADDR": "192.168.10.129",
        "NAMESERVERADDR1": "192.168.10.53",
    }
    assert render_symbols(ieasym.text, values) == ieasym.text
