"""The three system symbols Wazi aaS rewrites, and the checks that join IEASYMxx with TCP/IP.

Wazi aaS sets HOMEIPADDRESS1, DEFAULTROUTEADDR and NAMESERVERADDR1 in IEASYMxx when it creates
a server; the copied system reaches the network only if PROFILE and TCPIP.DATA take their
addresses from them. Findings are errors when the network would not come up, warnings when it
would but something is likely to surprise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from zimage.ebcdic import decode_member
from zimage.findings import Finding, Severity, sort_findings
from zimage.ieasym import (
    FILTERS,
    Ieasym,
    RenderError,
    Sysdef,
    normalize_name,
    parse_ieasym,
    render_ieasym,
    symbol_name_problem,
    value_problem,
)
from zimage.tcpip import Address, parse_profile, parse_tcpdata

HOME = "HOMEIPADDRESS1"
ROUTE = "DEFAULTROUTEADDR"
NAMESERVER = "NAMESERVERADDR1"

# name -> (value Wazi aaS sets, where TCP/IP uses it)
WAZI_SYMBOLS: dict[str, tuple[str, str]] = {
    HOME: ("172.26.1.2", "the PROFILE HOME address"),
    ROUTE: ("172.26.1.1", "the PROFILE default route"),
    NAMESERVER: ("172.26.1.1", "the TCPIP.DATA name server (NSINTERADDR)"),
}
WAZI_VALUES: dict[str, str] = {name: value for name, (value, _) in WAZI_SYMBOLS.items()}


class Member(BaseModel):
    """A member to check: ``name`` is what findings show as FILE; ``text`` may be given as raw
    bytes (EBCDIC or ASCII, with or without line ends) and is decoded."""

    model_config = ConfigDict(frozen=True)

    name: str
    text: str

    @field_validator("text", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return decode_member(bytes(value)) if isinstance(value, bytes | bytearray) else value


def ipv4_problem(value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"'{value}' is not an IPv4 address (four decimal numbers 0-255, no leading zeros)"
    return None


def wazi_value_problem(name: str, value: str) -> str | None:
    """Rules beyond IEASYMxx's for the three symbols: the value must be an IPv4 address."""
    if normalize_name(name) in WAZI_SYMBOLS and "&" not in value:
        problem = ipv4_problem(value)
        return f"&{normalize_name(name)}: {problem}" if problem else None
    return None


def render_symbols(text: str, values: Mapping[str, str]) -> str:
    """``render_ieasym`` that also refuses a non-IPv4 value for the three Wazi aaS symbols."""
    problems = [p for n, v in values.items() if (p := wazi_value_problem(n, v))]
    if problems:
        raise RenderError(problems)
    return render_ieasym(text, values)


def _filter_words(sysdef: Sysdef) -> str:
    names = list(dict.fromkeys(FILTERS[f.keyword] for f in sysdef.filters))
    return " and ".join(names) + (" differ" if len(names) > 1 else " differs")


class _Findings:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Finding] = []

    def add(self, line: int, severity: Severity, message: str, symbol: str | None = None) -> None:
        self.items.append(Finding(file=self.file, line=max(line, 1), severity=severity,
                                  message=message, symbol=symbol))


def check_ieasym(member: Member) -> list[Finding]:
    parsed = parse_ieasym(member.text)
    out = _Findings(member.name)
    for problem in parsed.problems:
        out.add(problem.line, problem.severity, problem.message, problem.symbol)
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for sysdef in parsed.sysdefs:
        scope = tuple(sorted((f.keyword, f.value.upper()) for f in sysdef.filters))
        for d in sysdef.definitions:
            rule = symbol_name_problem(d.name) or value_problem(d.name, d.value)
            if rule:
                out.add(d.line, "error", rule, d.key)
            earlier = seen.get((d.key, scope))
            if earlier is not None:
                out.add(d.line, "warning", f"&{d.key} is defined twice in the same scope (first at line "
                        f"{earlier}); the last definition processed wins", d.key)
            seen[(d.key, scope)] = d.line
    for name in WAZI_SYMBOLS:
        _check_wazi_symbol(parsed, name, out)
    return out.items


def _check_wazi_symbol(parsed: Ieasym, name: str, out: _Findings) -> None:
    value, use = WAZI_SYMBOLS[name]
    unfiltered = [d for s in parsed.unfiltered() for d in s.definitions if d.key == name]
    filtered = [(s, d) for s in parsed.sysdefs if s.filtered for d in s.definitions if d.key == name]
    if not unfiltered and not filtered:
        where = parsed.unfiltered()[0].line if parsed.unfiltered() else 1
        out.add(where, "error", f"&{name} is not defined; Wazi aaS sets it (to {value}) for {use}: "
                f"add SYMDEF(&{name}.='{value}') to a SYSDEF without filters", name)
    for sysdef, d in filtered:
        filters = sysdef.describe_filters()
        if unfiltered:
            message = (f"&{name} is also defined under SYSDEF {filters} (line {sysdef.line}); that "
                       "definition applies only where the filter matches")
        else:
            message = (f"&{name} is defined only under SYSDEF {filters} (line {sysdef.line}): the "
                       f"{_filter_words(sysdef)} on Wazi aaS, so define it in a SYSDEF without filters")
        out.add(d.line, "warning", message, name)
    for d in unfiltered + [d for _, d in filtered]:
        if "&" in d.value:
            out.add(d.line, "warning", f"&{name} ('{d.value}') refers to other symbols; that it "
                    "resolves to an IPv4 address is not checked", name)
        elif problem := ipv4_problem(d.value):
            out.add(d.line, "error", f"&{name}: {problem}", name)


def _reference_problem(addr: Address | None, name: str, what: str, out: _Findings, line: int,
                       severity: Severity = "error") -> None:
    """Report when ``addr`` is not a reference to ``&name``."""
    value = WAZI_VALUES[name]
    if addr is None:
        out.add(line, severity, f"{what} has no address; use &{name}. (Wazi aaS sets it to {value})", name)
        return
    symbol = addr.symbol
    if symbol is not None and symbol.upper() == name:
        if symbol != name:
            out.add(addr.line, "warning", f"{what} writes &{symbol} in lower case; system symbols are "
                    f"substituted in upper case: write &{name}.", name)
        return
    if addr.is_literal:
        found = f"is the literal address {addr.text}"
    elif symbol is not None:
        found = f"uses &{symbol}, which Wazi aaS does not set"
    else:
        found = f"is {addr.text!r}"
    out.add(addr.line, severity, f"{what} {found}; use &{name}. (Wazi aaS sets it to {value})", name)


def check_profile(member: Member) -> list[Finding]:
    profile = parse_profile(member.text)
    out = _Findings(member.name)
    for note in profile.notes:
        out.add(note.line, "warning", note.message)
    for include in profile.includes:
        out.add(include.line, "warning", "INCLUDE: statements in included members are not checked")
    primary = profile.primary()
    if primary is None:
        out.add(1, "error", f"no HOME address found; the primary link needs HOME &{HOME}. <link> "
                f"(Wazi aaS sets &{HOME} to {WAZI_VALUES[HOME]})", HOME)
    else:
        what = f"the {primary.statement} address of the primary link {primary.link or '?'}"
        _reference_problem(primary.address, HOME, what, out, primary.address.line)
    for entry in profile.home:
        if entry is not primary and entry.address.is_literal:
            out.add(entry.address.line, "warning", f"{entry.statement} address {entry.address.text} "
                    f"for link {entry.link or '?'} is a literal; it may not exist on Wazi aaS's network")
    if not profile.default_routes:
        out.add(1, "warning", f"no default route (ROUTE DEFAULT in BEGINRoutes, or GATEWAY DEFAULTNET); "
                f"Wazi aaS expects one through &{ROUTE}.", ROUTE)
    for route in profile.default_routes:
        what = "the default route's first hop" + (" (GATEWAY DEFAULTNET)" if route.statement == "GATEWAY" else "")
        _reference_problem(route.gateway, ROUTE, what, out, route.line)
    return out.items


def check_tcpdata(member: Member) -> list[Finding]:
    data = parse_tcpdata(member.text)
    out = _Findings(member.name)
    if not data.name_servers:
        out.add(1, "warning", f"no NSINTERADDR (or NAMESERVER); the resolver will not use the name "
                f"server Wazi aaS provides through &{NAMESERVER}.", NAMESERVER)
        return out.items
    first, *others = data.name_servers
    _reference_problem(first.address, NAMESERVER, f"the first name server ({first.keyword})", out,
                       first.address.line)
    for server in others:
        symbol = server.address.symbol
        if symbol is not None and symbol.upper() == NAMESERVER:
            continue
        kind = "literal" if server.address.is_literal else "not a symbol Wazi aaS sets"
        out.add(server.address.line, "warning", f"another name server {server.address.text} ({kind}) "
                "may not be reachable on Wazi aaS", NAMESERVER)
    return out.items


def check_members(ieasym: Member, profile: Member | None = None, tcpdata: Member | None = None) -> list[Finding]:
    """All findings for a system's members, ordered by file (as given) and line."""
    findings = check_ieasym(ieasym)
    if profile is not None:
        findings += check_profile(profile)
    if tcpdata is not None:
        findings += check_tcpdata(tcpdata)
    return sort_findings(findings)
