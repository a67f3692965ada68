"""LOADxx member (z/OS MVS Initialization and Tuning Reference, LOADxx): the statements the IPL
chain follows, with the filters that scope them. Pure.

Fixed 80-byte records; the keyword starts in column 1, its value in column 10; columns 72-80
are ignored; a record with '*' in column 1 is a comment. HWNAME, LPARNAME and VMUSERID are
filters: the statements after one apply only where it matches, until the next filter of the same
or a higher level (HWNAME above LPARNAME above VMUSERID) resets it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from zimage.findings import Severity

DATA_COLUMNS = 71
VALUE_COLUMN = 9  # 0-based: column 10
FILTER_LEVELS = {"HWNAME": 0, "LPARNAME": 1, "VMUSERID": 2}
KNOWN = {
    "ARCHLVL", "DYNCPADD", "HWNAME", "IEASYM", "INITSQA", "IODF", "LPARNAME", "MACHMIG", "NUCLEUS",
    "NUCLST", "PARMLIB", "PROCVIEW", "SYSCAT", "SYSPARM", "SYSPLEX", "VMUSERID",
}  # fmt: skip
_SUFFIX = re.compile(r"[A-Z0-9@#$]{2}\Z")


@dataclass(frozen=True)
class Statement:
    keyword: str
    value: str  # columns 10-71, trailing blanks removed
    line: int
    filters: tuple[str, ...]  # e.g. ("LPARNAME(PROD1)",); empty: applies everywhere

    def words(self) -> list[str]:
        return self.value.split()


@dataclass
class LoadMember:
    statements: list[Statement] = field(default_factory=list)
    problems: list[tuple[int, Severity, str]] = field(default_factory=list)

    def unfiltered(self, keyword: str) -> list[Statement]:
        return [s for s in self.statements if s.keyword == keyword and not s.filters]

    def filtered(self, keyword: str) -> list[Statement]:
        return [s for s in self.statements if s.keyword == keyword and s.filters]


def parse_loadxx(text: str) -> LoadMember:
    out = LoadMember()
    active: list[str | None] = [None, None, None]
    for number, record in enumerate(text.split("\n"), 1):
        data = record[:DATA_COLUMNS].rstrip()
        if not data.strip() or data.startswith("*"):
            continue
        keyword = data[:VALUE_COLUMN].strip().upper()
        value = data[VALUE_COLUMN:].strip()
        if data[:1] == " " or " " in data[:VALUE_COLUMN].strip():
            out.problems.append(
                (
                    number,
                    "error",
                    f"{data.strip()[:20].rstrip()!r}: a LOADxx keyword starts in column 1 and its value in column 10",
                )
            )
            continue
        if keyword in FILTER_LEVELS:
            level = FILTER_LEVELS[keyword]
            active[level] = f"{keyword}({value})" if value else None
            for deeper in range(level + 1, len(active)):
                active[deeper] = None
            continue
        if keyword not in KNOWN:
            out.problems.append((number, "warning", f"unknown LOADxx statement {keyword}"))
        filters = tuple(f for f in active if f)
        out.statements.append(Statement(keyword, value, number, filters))
    return out


def ieasym_suffixes(statement: Statement) -> tuple[list[str], list[str]]:
    """(suffixes, problems) of `IEASYM xx` or `IEASYM (xx,yy,...,L)`; L (list) is no suffix."""
    text = statement.value.split()[0] if statement.value.split() else ""
    inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
    suffixes, problems = [], []
    for item in (p.strip().upper() for p in inner.split(",")):
        if item == "L":
            continue
        if _SUFFIX.fullmatch(item):
            suffixes.append(item)
        else:
            problems.append(f"IEASYM suffix {item!r}: expected two characters A-Z 0-9 @ # $")
    if not suffixes and not problems:
        problems.append("IEASYM names no suffix")
    return suffixes, problems


@dataclass(frozen=True)
class Iodf:
    suffix: str  # two hex digits, or ** / -- (the IODF the hardware or the last IPL used)
    hlq: str


def iodf(statement: Statement) -> Iodf:
    words = statement.words()
    suffix = words[0].upper() if words else "**"
    hlq = words[1].upper() if len(words) > 1 else "SYS1"
    return Iodf(suffix, hlq)


def parmlib(statement: Statement) -> tuple[str, str | None]:
    """(data set name, volser or None) of `PARMLIB dsn [volser]`: name in columns 10-53, volser 55-60."""
    words = statement.words()
    dsn = words[0].upper() if words else ""
    volser = words[1].upper() if len(words) > 1 else None
    return dsn, volser


def syscat(statement: Statement) -> tuple[str, str]:
    """(volser, catalog name) of SYSCAT: volser in columns 10-15, the catalog name from column 20."""
    value = statement.value.ljust(10)
    return value[:6].strip().upper(), value[10:].strip().upper()
