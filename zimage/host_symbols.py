"""A target's network symbols for the deployed copy of the IEASYMxx members (DESIGN.md §9, §15, §16), pure.

    plan_symbols(members, network) -> SymbolPlan(rewrites, status, written)
    requested_network(image) -> the image's network when it differs from Wazi aaS's own values, else None

`members` are the IEASYMxx members the IPL chain resolved to (zimage.ipl_chain). Each symbol goes
into every member that defines it in a SYSDEF without filters; the records are rewritten in place
by the data mover on the host, so the number of records and each record's length stay. When any
symbol cannot be written, none is: the status says why, and the run says so.

An emulator host always gets its values (hosts[].network, else the image's). For IBM Cloud, Wazi aaS
sets the three symbols itself when it creates a server, to its own values, so the mover writes them
only when the image's `network` gives other values (a custom image used where nothing sets them).
"""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel

from zimage.config import Image, Network
from zimage.ieasym import RenderError, parse_ieasym
from zimage.ipl_chain import MemberRead
from zimage.member_symbols import member_text, set_symbols_in_place


class MemberRewrite(BaseModel):
    volser: str
    dsn: str
    member: str
    records: list[bytes]
    symbols: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.volser}:{self.dsn}({self.member})"


class SymbolPlan(BaseModel):
    rewrites: list[MemberRewrite]
    status: str  # "written: ..." or "NOT written: <why>"

    @property
    def written(self) -> bool:
        return bool(self.rewrites)

    def mover_jobs(self) -> list[dict[str, Any]]:
        """The rewrites as the data mover takes them (datamover.rewrite.member_jobs)."""
        return [
            {"volser": r.volser, "dsn": r.dsn, "member": r.member,
             "records": [base64.b64encode(x).decode() for x in r.records]}
            for r in self.rewrites
        ]  # fmt: skip


LEFT_TO_WAZI = (
    "left to Wazi aaS, which sets HOMEIPADDRESS1, DEFAULTROUTEADDR and NAMESERVERADDR1 when it creates a server "
    "(give images[].network other values to have the mover write them into the image)"
)


def requested_network(image: Image) -> Network | None:
    """The values the mover must write for IBM Cloud: the image's, unless they are Wazi aaS's own."""
    return None if image.network == Network() else image.network


def not_written(why: str) -> SymbolPlan:
    return SymbolPlan(rewrites=[], status=f"NOT written: {why}; the deployed IEASYM holds the values as extracted")


def plan_symbols(members: list[MemberRead], network: Network) -> SymbolPlan:
    values = network.model_dump()
    if not members:
        return not_written("the IPL chain found no IEASYMxx member on the image's volumes (see `zimage ipl check`)")
    rewrites: list[MemberRewrite] = []
    problems: list[str] = []
    for read in members:
        parsed = parse_ieasym(member_text(read.records))
        defined = {d.key for s in parsed.unfiltered() for d in s.definitions}
        mine = {name: value for name, value in values.items() if name in defined}
        if not mine:
            continue
        try:
            records = set_symbols_in_place(read.records, mine)
        except RenderError as exc:
            problems += [f"{read.ref.label}: {p}" for p in exc.problems]
            continue
        rewrites.append(
            MemberRewrite(volser=read.ref.volser, dsn=read.ref.dsn, member=read.ref.member, records=records,
                          symbols=mine)
        )  # fmt: skip
    placed = {name for r in rewrites for name in r.symbols}
    problems += [
        f"&{name} has no SYMDEF in a SYSDEF without filters in {', '.join(m.ref.label for m in members)}"
        for name in values
        if name not in placed
    ]
    if problems:
        return not_written("; ".join(problems))
    where = "; ".join(f"{r.label}: " + ", ".join(f"{k}={v}" for k, v in r.symbols.items()) for r in rewrites)
    return SymbolPlan(rewrites=rewrites, status=f"written: {where}")
