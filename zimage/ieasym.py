"""IEASYMxx parmlib member: parse (keeping every position) and render new symbol values.

Syntax kept here (z/OS MVS Initialization and Tuning Reference, IEASYMxx): fixed 80-byte
records, data in columns 1-71, columns 72-80 ignored (sequence numbers); ``/* */`` comments
that may span records; blanks and commas delimit; a statement runs until the next ``SYSDEF``;
a parameter ``KEYWORD(value)`` cannot span records. ``SYSDEF`` filters: HWNAME, LPARNAME,
VMUSERID; value parameters: SYSPARM, SYSNAME, SYSCLONE, SYMDEF(&NAME.='text').

Pure: text in, structures or text out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from zimage.ebcdic import RECORD_LENGTH, Record, join_records, split_records
from zimage.findings import Severity

DATA_COLUMNS = 71  # columns 1-71 hold statements
SEQUENCE_COLUMNS = slice(72, 80)  # columns 73-80: the sequence number field
MAX_NAME_LENGTH = 16  # z/OS 2.2 and later; 8 before
FILTERS = {"HWNAME": "hardware name", "LPARNAME": "LPAR name", "VMUSERID": "z/VM user ID"}
VALUE_PARAMETERS = {"SYSPARM", "SYSNAME", "SYSCLONE", "SYMDEF"}
CONTINUATION_INDENT = "          "  # where SYMDEF lines usually start: under SYSDEF's operand

# IBM-defined symbols whose value the system sets; SYMDEF may not define them (IEA012E 002).
RESERVED_SYMBOLS = frozenset(
    {
        "SYSALVL", "SYSCLONE", "SYSNAME", "SYSOSLVL", "SYSPLEX", "SYSR1",
        "DATE", "DAY", "HHMMSS", "HR", "JDAY", "JOBNAME", "LDAY", "LHHMMSS", "LHR", "LJDAY",
        "LMIN", "LMON", "LSEC", "LWDAY", "LYR2", "LYR4", "LYYMMDD", "MIN", "MON", "SEC", "SEQ",
        "SID", "TIME", "WDAY", "YR2", "YR4", "YYMMDD",
    }
)  # fmt: skip

_NAME = re.compile(r"[A-Z@#$][A-Z0-9@#$_]*\Z", re.IGNORECASE)
_WORD = re.compile(r"[A-Z0-9@#$_]+", re.IGNORECASE)
_SYMDEF = re.compile(r"\s*&([^.=\s']*)(\.?)\s*=\s*'([^']*)'\s*\Z")
_DELIMITERS = " ,\t\n"


@dataclass(frozen=True)
class Span:
    """Columns ``start:end`` (0-based, end exclusive) of record ``record`` (0-based)."""

    record: int
    start: int
    end: int

    @property
    def line(self) -> int:
        return self.record + 1


@dataclass(frozen=True)
class Problem:
    line: int
    severity: Severity
    message: str
    symbol: str | None = None


@dataclass(frozen=True)
class SymbolDefinition:
    name: str  # as written, without '&' and '.'
    value: str  # the text between the quotes
    name_span: Span
    value_span: Span
    sysdef: int  # index of the SYSDEF statement that holds it

    @property
    def key(self) -> str:
        return self.name.upper()

    @property
    def line(self) -> int:
        return self.value_span.line


@dataclass(frozen=True)
class Filter:
    keyword: str  # HWNAME | LPARNAME | VMUSERID
    value: str
    line: int

    def __str__(self) -> str:
        return f"{self.keyword}({self.value})"


@dataclass
class Sysdef:
    index: int
    line: int
    filters: list[Filter] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)  # SYSNAME, SYSCLONE, SYSPARM
    definitions: list[SymbolDefinition] = field(default_factory=list)
    last_record: int = 0  # last record that holds data of this statement

    @property
    def filtered(self) -> bool:
        return bool(self.filters)

    def describe_filters(self) -> str:
        return " ".join(str(f) for f in self.filters)


@dataclass
class Ieasym:
    records: list[Record]
    sysdefs: list[Sysdef]
    problems: list[Problem]
    comment_open_after: list[bool]  # per record: a comment is still open at its end

    def definitions(self) -> list[SymbolDefinition]:
        return [d for s in self.sysdefs for d in s.definitions]

    def unfiltered(self) -> list[Sysdef]:
        return [s for s in self.sysdefs if not s.filtered]


def symbol_name_problem(name: str) -> str | None:
    """Why ``name`` (without '&' and '.') cannot be a system symbol, or None."""
    if not name:
        return "a symbol name needs 1 to 16 characters after '&'"
    if len(name) > MAX_NAME_LENGTH:
        return f"symbol name {name} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
    if not _NAME.match(name):
        return (
            f"symbol name {name} is not valid: it must start with a letter or @ # $ and go on with "
            "letters, digits, @ # $ or _"
        )
    if name.upper() in RESERVED_SYMBOLS:
        return f"&{name.upper()} is set by the system and cannot be defined with SYMDEF"
    return None


def value_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be the substitution text of ``&name``, or None.

    The resolved text may be no longer than the name with its ampersand; a value that refers
    to other symbols resolves only at IPL, so its length is not judged here.
    """
    if "'" in value:
        return f"the value of &{name} cannot contain a quote"
    if "/*" in value or "*/" in value:
        return f"the value of &{name} cannot contain a comment delimiter"
    if any(not (" " <= c <= "~") for c in value):
        return f"the value of &{name} holds a character that is not printable text"
    if "&" not in value and len(value) > len(name) + 1:
        return (
            f"the value of &{name} is {len(value)} characters long ('{value}'); the resolved value "
            f"may be at most {len(name) + 1} (the length of &{name})"
        )
    return None


@dataclass
class _Logical:
    """The member's statement text: comments blanked, record boundaries as '\\n'."""

    text: str
    where: list[tuple[int, int] | None]  # (record, column) of each character; None at boundaries
    comment_open_after: list[bool]
    problems: list[Problem]


def _logical(records: list[Record]) -> _Logical:
    chars: list[str] = []
    where: list[tuple[int, int] | None] = []
    open_after: list[bool] = []
    problems: list[Problem] = []
    in_comment = False
    comment_line = 0
    for r, record in enumerate(records):
        data = record.text[:DATA_COLUMNS]
        i = 0
        while i < len(data):
            if in_comment and data.startswith("*/", i):
                in_comment = False
                width = 2
            elif not in_comment and data.startswith("/*", i):
                in_comment = True
                comment_line = r + 1
                width = 2
            else:
                width = 1
            blank = in_comment or width == 2
            for k in range(width):
                chars.append(" " if blank else data[i + k])
                where.append((r, i + k))
            i += width
        chars.append("\n")
        where.append(None)
        open_after.append(in_comment)
    if in_comment:
        problems.append(
            Problem(comment_line, "error", "comment opened here is never closed with */; "
                    "everything after it is ignored")
        )
    return _Logical("".join(chars), where, open_after, problems)


def parse_ieasym(text: str) -> Ieasym:
    """Parse an IEASYMxx member; syntax problems are collected, never raised."""
    records = split_records(text)
    logical = _logical(records)
    parser = _Parser(logical)
    parser.run()
    return Ieasym(records, parser.sysdefs, logical.problems + parser.problems, logical.comment_open_after)


class _Parser:
    def __init__(self, logical: _Logical) -> None:
        self.s = logical.text
        self.where = logical.where
        self.sysdefs: list[Sysdef] = []
        self.problems: list[Problem] = []

    def line_at(self, index: int) -> int:
        for i in range(index, -1, -1):
            pos = self.where[i] if i < len(self.where) else None
            if pos is not None:
                return pos[0] + 1
        return 1

    def problem(self, index: int, severity: Severity, message: str, symbol: str | None = None) -> None:
        self.problems.append(Problem(self.line_at(index), severity, message, symbol))

    def run(self) -> None:
        s, i = self.s, 0
        while i < len(s):
            if s[i] in _DELIMITERS:
                i += 1
                continue
            word = _WORD.match(s, i)
            if word is None:
                end = self._next_delimiter(i)
                self.problem(i, "error", f"unexpected text {s[i:end]!r}")
                i = end
                continue
            keyword, j = word.group().upper(), word.end()
            if keyword == "SYSDEF" and (j == len(s) or s[j] in _DELIMITERS):
                self.sysdefs.append(Sysdef(index=len(self.sysdefs), line=self.line_at(i)))
                self._touch(i)
                i = j
            elif j < len(s) and s[j] == "(":
                i = self._parameter(keyword, i, j)
            else:
                end = self._next_delimiter(i)
                self.problem(i, "error", f"unexpected text {s[i:end]!r}: expected SYSDEF or KEYWORD(value)")
                i = end

    def _next_delimiter(self, i: int) -> int:
        while i < len(self.s) and self.s[i] not in _DELIMITERS:
            i += 1
        return i

    def _touch(self, index: int) -> None:
        pos = self.where[index]
        if self.sysdefs and pos is not None:
            self.sysdefs[-1].last_record = max(self.sysdefs[-1].last_record, pos[0])

    def _parameter(self, keyword: str, start: int, open_paren: int) -> int:
        s = self.s
        # a value may hold a substring of a symbol, SYSCLONE(&SYSNAME(3:2)): parentheses nest
        k, quoted, depth = open_paren + 1, False, 0
        while k < len(s) and s[k] != "\n":
            if s[k] == "'":
                quoted = not quoted
            elif s[k] == "(" and not quoted:
                depth += 1
            elif s[k] == ")" and not quoted:
                if depth == 0:
                    break
                depth -= 1
            k += 1
        if k >= len(s) or s[k] != ")":
            what = "quote" if quoted else "parenthesis"
            self.problem(start, "error", f"{keyword}( is not closed on its record (unterminated {what}); "
                         "a parameter cannot span records")
            return k
        if not self.sysdefs:
            self.problem(start, "error", f"{keyword}(...) comes before any SYSDEF statement")
            return k + 1
        self._touch(start)
        sysdef = self.sysdefs[-1]
        content = s[open_paren + 1 : k]
        if keyword in FILTERS:
            sysdef.filters.append(Filter(keyword, content.strip(), self.line_at(start)))
        elif keyword == "SYMDEF":
            self._symdef(sysdef, open_paren + 1, content)
        elif keyword in VALUE_PARAMETERS:
            sysdef.parameters[keyword] = content.strip()
        else:
            self.problem(start, "warning", f"unknown IEASYMxx parameter {keyword}")
        return k + 1

    def _symdef(self, sysdef: Sysdef, offset: int, content: str) -> None:
        match = _SYMDEF.match(content)
        if match is None:
            self.problem(offset, "error", f"SYMDEF({content.strip()}) is not of the form SYMDEF(&NAME.='value')")
            return
        name_at = offset + match.start(1) - 1  # the '&'
        name_end = offset + match.end(2)
        quote_open = offset + match.start(3) - 1
        quote_close = offset + match.end(3)
        first, last = self.where[name_at], self.where[name_end - 1]
        q1, q2 = self.where[quote_open], self.where[quote_close]
        assert first and last and q1 and q2  # within one record, so never a boundary
        definition = SymbolDefinition(
            name=match.group(1),
            value=match.group(3),
            name_span=Span(first[0], first[1], last[1] + 1),
            value_span=Span(q1[0], q1[1] + 1, q2[1]),
            sysdef=sysdef.index,
        )
        sysdef.definitions.append(definition)


# ---------------------------------------------------------------------------------------------
# Render


class RenderError(ValueError):
    """The requested values cannot be rendered; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def normalize_name(name: str) -> str:
    """``&NAME.``, ``&NAME`` or ``NAME`` -> ``NAME`` (upper case)."""
    name = name.strip()
    if name.startswith("&"):
        name = name[1:]
    if name.endswith("."):
        name = name[:-1]
    return name.upper()


def render_ieasym(text: str, values: Mapping[str, str]) -> str:
    """Set ``values`` (symbol name -> substitution text) in an IEASYMxx member.

    Every definition of a name gets the new text between its quotes; the rest of its record
    keeps its bytes (shifted within columns 1-71 when the length changes, using trailing
    blanks), columns 72-80 stay as they were. A name without an unfiltered definition gets a
    SYMDEF record in the last unfiltered SYSDEF, or in a SYSDEF appended at the end.
    """
    wanted = {normalize_name(n): v for n, v in values.items()}
    problems = [p for n, v in wanted.items() for p in (symbol_name_problem(n), value_problem(n, v)) if p]
    if problems:
        raise RenderError(problems)
    member = parse_ieasym(text)
    errors = [f"line {p.line}: {p.message}" for p in member.problems if p.severity == "error"]
    if errors:
        raise RenderError(["the member has syntax errors, fix them first", *errors])

    records = list(member.records)
    by_record: dict[int, list[tuple[Span, str]]] = {}
    defined_unfiltered: set[str] = set()
    for sysdef in member.sysdefs:
        for d in sysdef.definitions:
            if d.key in wanted:
                by_record.setdefault(d.value_span.record, []).append((d.value_span, wanted[d.key]))
                if not sysdef.filtered:
                    defined_unfiltered.add(d.key)
    for index, changes in by_record.items():
        records[index] = _replace_in_record(records[index], changes, index)

    missing = [n for n in wanted if n not in defined_unfiltered]
    if missing:
        records = _insert_definitions(member, records, [(n, wanted[n]) for n in missing])
    result = join_records(records)
    _verify(result, wanted, member)
    return result


def _replace_in_record(record: Record, changes: list[tuple[Span, str]], index: int) -> Record:
    text = record.text
    data, tail = text[:DATA_COLUMNS], text[DATA_COLUMNS:]
    for span, value in sorted(changes, key=lambda c: c[0].start, reverse=True):
        data = data[: span.start] + value + data[span.end :]
    excess = len(data) - DATA_COLUMNS
    if excess > 0:
        trailing_blanks = len(data) - len(data.rstrip(" "))
        if trailing_blanks < excess:
            raise RenderError(
                [f"line {index + 1}: the new value does not fit in columns 1-71 "
                 f"({excess - trailing_blanks} column(s) short); move the SYMDEF to a line of its own"]
            )
        data = data[:DATA_COLUMNS]
    if tail and len(data) < DATA_COLUMNS:
        data = data.ljust(DATA_COLUMNS)  # keep columns 72-80 where they were
    return Record(data + tail, record.end)


def _symdef_text(name: str, value: str) -> str:
    return f"SYMDEF(&{name}.='{value}')"


def _sequence(record: Record) -> int | None:
    field_ = record.text[SEQUENCE_COLUMNS]
    return int(field_) if len(field_) == 8 and field_.isdigit() else None


def _new_records(
    contents: list[str], records: list[Record], after: int, padded: bool
) -> list[Record]:
    """Records for ``contents`` placed after record ``after``: same form as their neighbours."""
    previous = _sequence(records[after]) if after >= 0 else None
    following = _sequence(records[after + 1]) if after + 1 < len(records) else None
    numbers: list[int | None] = [None] * len(contents)
    if previous is not None:
        step = 100 if following is None else (following - previous) // (len(contents) + 1)
        if step >= 1 and previous + step * len(contents) <= 99_999_999:
            numbers = [previous + step * (k + 1) for k in range(len(contents))]
    out = []
    for content, number in zip(contents, numbers, strict=True):
        text = content
        if padded:
            text = content.ljust(DATA_COLUMNS) + " " + (f"{number:08d}" if number is not None else " " * 8)
        out.append(Record(text, ""))
    return out


def _insert_definitions(member: Ieasym, records: list[Record], values: list[tuple[str, str]]) -> list[Record]:
    # Fixed records without line ends must stay 80 bytes; otherwise follow the majority.
    no_line_ends = len(records) > 1 and all(r.end == "" for r in records)
    if len(records) == 1 and records[0].end == "" and len(records[0].text) == RECORD_LENGTH:
        no_line_ends = True  # a single fixed record
    if no_line_ends and any(len(r.text) != RECORD_LENGTH for r in records):
        raise RenderError([f"the member has no line ends but is not made of whole {RECORD_LENGTH}-byte records"])
    padded = no_line_ends or sum(len(r.text) >= RECORD_LENGTH for r in records) * 2 > len(records)
    line_end = next((r.end for r in records if r.end), "\n")
    targets = member.unfiltered()
    if targets:
        target = targets[-1]
        after = target.last_record
        while after < len(records) - 1 and member.comment_open_after[after]:
            after += 1  # never insert into a comment that continues below
        indent = _indent_of(records, target)
        contents = [indent + _symdef_text(n, v) for n, v in values]
    else:
        after = len(records) - 1
        contents = ["SYSDEF    " + _symdef_text(*values[0])]
        contents += [CONTINUATION_INDENT + _symdef_text(n, v) for n, v in values[1:]]
    new = _new_records(contents, records, after, padded)
    if no_line_ends:
        return records[: after + 1] + new + records[after + 1 :]
    result = list(records)
    if after >= 0 and result[after].end == "":
        result[after] = Record(result[after].text, line_end)
        new[-1] = Record(new[-1].text, "")
        new = [Record(r.text, line_end) for r in new[:-1]] + [new[-1]]
    else:
        new = [Record(r.text, line_end) for r in new]
    return result[: after + 1] + new + result[after + 1 :]


def _indent_of(records: list[Record], sysdef: Sysdef) -> str:
    """Indentation of the statement's last SYMDEF record when it starts with blanks."""
    if sysdef.definitions:
        text = records[sysdef.definitions[-1].name_span.record].text
        stripped = text.lstrip(" ")
        if stripped.upper().startswith("SYMDEF"):
            return text[: len(text) - len(stripped)]
    return CONTINUATION_INDENT


def _verify(result: str, wanted: Mapping[str, str], before: Ieasym) -> None:
    """Re-read the rendered member: every wanted name must now resolve unfiltered to its value."""
    after = parse_ieasym(result)
    problems = [f"line {p.line}: {p.message}" for p in after.problems if p.severity == "error"]
    effective: dict[str, str] = {}
    for sysdef in after.unfiltered():
        for d in sysdef.definitions:
            effective[d.key] = d.value
    for name, value in wanted.items():
        if effective.get(name) != value:
            problems.append(f"&{name} could not be set safely; add SYMDEF(&{name}.='{value}') by hand")
    def others(member: Ieasym) -> list[tuple[str, str]]:
        return [(d.key, d.value) for d in member.definitions() if d.key not in wanted]

    if others(after) != others(before):
        problems.append("rendering would change other definitions")
    if problems:
        raise RenderError(problems)
