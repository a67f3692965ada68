"""TCP/IP PROFILE and TCPIP.DATA: parsing and the checks that they use the Wazi aaS symbols."""

from __future__ import annotations

import pytest

from zimage.findings import Finding
from zimage.symbols import Member, check_profile, check_tcpdata
from zimage.tcpip import parse_profile, parse_tcpdata


def member(lines: list[str], pad: bool = True) -> str:
    """Records padded to 80 columns as in an FB 80 data set (or left unpadded)."""
    return "".join((line.ljust(80) if pad else line) + "\n" for line in lines)


def profile_findings(lines: list[str], pad: bool = True) -> list[Finding]:
    return check_profile(Member(name="PROFILE", text=member(lines, pad)))


def tcpdata_findings(lines: list[str], pad: bool = True) -> list[Finding]:
    return check_tcpdata(Member(name="TCPDATA", text=member(lines, pad)))


def summary(findings: list[Finding]) -> list[tuple[str, int, str | None]]:
    return [(f.severity, f.line, f.symbol) for f in findings]


DEVICES = ["DEVICE OSA1 MPCIPA", "LINK OSALINK IPAQENET OSA1", "LINK OSA2 IPAQENET OSA1"]
ROUTES = ["BEGINRoutes", "ROUTE DEFAULT &DEFAULTROUTEADDR OSALINK MTU 1492", "ENDRoutes"]


@pytest.mark.parametrize("pad", [True, False])
@pytest.mark.parametrize("ref", ["&HOMEIPADDRESS1", "&HOMEIPADDRESS1."])
def test_compliant_profile(ref: str, pad: bool) -> None:
    assert profile_findings([*DEVICES, "HOME", f"  {ref} OSALINK", *ROUTES, "START OSA1"], pad) == []


def test_keywords_are_case_insensitive_and_home_may_span_lines() -> None:
    lines = [
        "home &HOMEIPADDRESS1.",
        "     OSALINK  10.9.9.9",
        "   OSA2",
        "beginroutes",
        "  route default &DEFAULTROUTEADDR. OSALINK mtu 1492",
        "endroutes",
    ]
    profile = parse_profile(member(lines))
    assert [(e.address.text, e.link, e.address.line) for e in profile.home] == [
        ("&HOMEIPADDRESS1.", "OSALINK", 1),
        ("10.9.9.9", "OSA2", 2),
    ]
    assert [(r.gateway.text if r.gateway else None, r.link, r.line) for r in profile.default_routes] == [
        ("&DEFAULTROUTEADDR.", "OSALINK", 5)
    ]
    (warning,) = profile_findings(lines)
    assert (warning.severity, warning.line) == ("warning", 2)
    assert "HOME address 10.9.9.9 for link OSA2 is a literal" in warning.message


def test_literal_home_and_route_are_errors() -> None:
    found = profile_findings(
        [*DEVICES, "HOME", "  192.168.10.21 OSALINK", "BEGINRoutes",
         "ROUTE DEFAULT 192.168.10.129 OSALINK MTU 1492", "ENDRoutes"]
    )
    assert summary(found) == [("error", 5, "HOMEIPADDRESS1"), ("error", 7, "DEFAULTROUTEADDR")]
    assert "the HOME address of the primary link OSALINK is the literal address 192.168.10.21" in found[0].message
    assert "use &HOMEIPADDRESS1. (Wazi aaS sets it to 172.26.1.2)" in found[0].message
    assert "first hop is the literal address 192.168.10.129" in found[1].message


def test_a_symbol_in_a_comment_does_not_count() -> None:
    found = profile_findings(
        ["HOME", "  10.1.1.2 OSALINK ; was &HOMEIPADDRESS1", "; ROUTE DEFAULT &DEFAULTROUTEADDR OSALINK",
         "BEGINRoutes", "ROUTE DEFAULT 10.1.1.1 OSALINK MTU 1492 ;&DEFAULTROUTEADDR", "ENDRoutes"]
    )
    assert summary(found) == [("error", 2, "HOMEIPADDRESS1"), ("error", 5, "DEFAULTROUTEADDR")]


def test_other_symbols_are_errors_too() -> None:
    found = profile_findings(["HOME &MYIP OSALINK", *ROUTES])
    assert summary(found) == [("error", 1, "HOMEIPADDRESS1")]
    assert "uses &MYIP, which Wazi aaS does not set" in found[0].message


def test_lower_case_symbol_is_a_warning() -> None:
    found = profile_findings(["HOME &homeipaddress1 OSALINK", *ROUTES])
    assert summary(found) == [("warning", 1, "HOMEIPADDRESS1")]


def test_primaryinterface_selects_the_primary_link() -> None:
    lines = ["HOME 10.1.1.5 OSA2", "  &HOMEIPADDRESS1 OSALINK", "PRIMARYINTERFACE OSALINK", *ROUTES]
    found = profile_findings(lines)
    assert summary(found) == [("warning", 1, None)]  # the other literal, not an error
    lines[2] = "PRIMARYINTERFACE OSA2"
    assert summary(profile_findings(lines)) == [("error", 1, "HOMEIPADDRESS1")]


def test_interface_ipaddr_counts_when_there_is_no_home() -> None:
    lines = [
        "INTERFACE OSAIF DEFINE IPAQENET PORTNAME OSA1",
        "   IPADDR &HOMEIPADDRESS1./24 MTU 1492",
        "INTERFACE OSA6 DEFINE IPAQENET6 PORTNAME OSA1",
        *ROUTES,
    ]
    assert profile_findings(lines) == []
    lines[1] = "   IPADDR 10.1.1.2/24"
    found = profile_findings(lines)
    assert summary(found) == [("error", 2, "HOMEIPADDRESS1")]
    assert "the INTERFACE address of the primary link OSAIF" in found[0].message


def test_no_home_is_an_error() -> None:
    assert summary(profile_findings(["DEVICE OSA1 MPCIPA", *ROUTES])) == [("error", 1, "HOMEIPADDRESS1")]


def test_no_default_route_is_a_warning() -> None:
    lines = ["HOME &HOMEIPADDRESS1 OSALINK", "BEGINRoutes", "ROUTE 10.0.0.0/8 = OSALINK MTU 1492", "ENDRoutes"]
    found = profile_findings(lines)
    assert summary(found) == [("warning", 1, "DEFAULTROUTEADDR")]
    assert "no default route" in found[0].message


@pytest.mark.parametrize(
    "route",
    ["ROUTE 0.0.0.0/0 {} OSALINK MTU 1492", "ROUTE 0.0.0.0 0.0.0.0 {} OSALINK MTU 1492",
     "ROUTE DEFAULT {} OSALINK MTU 1492"],
)
def test_default_route_forms(route: str) -> None:
    lines = ["HOME &HOMEIPADDRESS1 OSALINK", "BEGINRoutes", route.format("&DEFAULTROUTEADDR"), "ENDRoutes"]
    assert profile_findings(lines) == []
    lines[2] = route.format("10.1.1.1")
    assert summary(profile_findings(lines)) == [("error", 3, "DEFAULTROUTEADDR")]


def test_direct_default_route_is_an_error() -> None:
    found = profile_findings(["HOME &HOMEIPADDRESS1 OSALINK", "BEGINRoutes", "ROUTE DEFAULT = OSALINK", "ENDRoutes"])
    assert summary(found) == [("error", 3, "DEFAULTROUTEADDR")]
    assert "is '='" in found[0].message


def test_older_gateway_defaultnet_form() -> None:
    lines = [
        "HOME &HOMEIPADDRESS1 OSALINK",
        "GATEWAY",
        "; network  first hop          link    size  mask",
        "10         =                  OSALINK 1492  0",
        "DEFAULTNET &DEFAULTROUTEADDR. OSALINK 1492  0",
        "START OSA1",
    ]
    profile = parse_profile(member(lines))
    assert [(r.statement, r.line) for r in profile.default_routes] == [("GATEWAY", 5)]
    assert profile_findings(lines) == []
    lines[4] = "defaultnet 10.1.1.1 OSALINK 1492 0"
    found = profile_findings(lines)
    assert summary(found) == [("error", 5, "DEFAULTROUTEADDR")]
    assert "(GATEWAY DEFAULTNET)" in found[0].message


def test_include_is_reported_as_not_checked() -> None:
    found = profile_findings(["INCLUDE TCPIP.PROFILE(HOME)", "HOME &HOMEIPADDRESS1 OSALINK", *ROUTES])
    assert summary(found) == [("warning", 1, None)]
    assert "INCLUDE" in found[0].message


# --- TCPIP.DATA ------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [True, False])
@pytest.mark.parametrize(
    "statement",
    ["NSINTERADDR &NAMESERVERADDR1", "NSINTERADDR &NAMESERVERADDR1.", "nsinteraddr &NAMESERVERADDR1",
     "NameServer &NAMESERVERADDR1", "SYSZ25A: NSINTERADDR &NAMESERVERADDR1"],
)
def test_compliant_tcpdata(statement: str, pad: bool) -> None:
    assert tcpdata_findings(["; TCPDATA", "TCPIPJOBNAME TCPIP", statement, "RESOLVEVIA UDP"], pad) == []


def test_literal_name_server_is_an_error() -> None:
    found = tcpdata_findings(["TCPIPJOBNAME TCPIP", "NSINTERADDR 192.168.10.53"])
    assert summary(found) == [("error", 2, "NAMESERVERADDR1")]
    assert "the first name server (NSINTERADDR) is the literal address 192.168.10.53" in found[0].message


def test_commented_name_servers_do_not_count() -> None:
    lines = [
        "; NSINTERADDR &NAMESERVERADDR1",
        "# NSINTERADDR &NAMESERVERADDR1",
        "NSINTERADDR 10.1.1.1 ; &NAMESERVERADDR1",
    ]
    assert summary(tcpdata_findings(lines)) == [("error", 3, "NAMESERVERADDR1")]


def test_second_literal_name_server_is_a_warning() -> None:
    lines = ["NSINTERADDR &NAMESERVERADDR1", "NSINTERADDR 9.9.9.9", "NSINTERADDR &NAMESERVERADDR1"]
    found = tcpdata_findings(lines)
    assert summary(found) == [("warning", 2, "NAMESERVERADDR1")]
    assert "another name server 9.9.9.9 (literal)" in found[0].message


def test_no_name_server_is_a_warning() -> None:
    assert summary(tcpdata_findings(["TCPIPJOBNAME TCPIP"])) == [("warning", 1, "NAMESERVERADDR1")]


def test_tcpdata_system_prefix_is_kept() -> None:
    data = parse_tcpdata(member(["SYSA: NSINTERADDR &NAMESERVERADDR1"]))
    assert [(n.system, n.keyword, n.address.symbol) for n in data.name_servers] == [
        ("SYSA", "NSINTERADDR", "NAMESERVERADDR1")
    ]
