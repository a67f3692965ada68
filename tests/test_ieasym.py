"""IEASYMxx parsing and the symbol checks on members written for the tests (80-column records)."""

from __future__ import annotations

import pytest

from zimage.findings import Finding
from zimage.ieasym import parse_ieasym
from zimage.symbols import Member, check_ieasym

GOOD_DEFS = [
    "          SYMDEF(&HOMEIPADDRESS1.='192.168.10.21')",
    "          SYMDEF(&DEFAULTROUTEADDR.='192.168.10.1')",
    "          SYMDEF(&NAMESERVERADDR1.='192.168.10.53')",
]


def records(lines: list[str], sequence: bool = True, newline: str | None = "\n", start: int = 100) -> str:
    """80-column records: data in 1-71, blank 72, sequence number (or blanks) in 73-80."""
    out = []
    for n, line in enumerate(lines):
        assert len(line) <= 71, f"test record too long: {line!r}"
        seq = f"{start + 100 * n:08d}" if sequence else " " * 8
        out.append(line.ljust(72) + seq)
    if newline is None:
        return "".join(out)
    return "".join(r + newline for r in out)


def findings_for(text: str) -> list[Finding]:
    return check_ieasym(Member(name="IEASYM00", text=text))


def messages(findings: list[Finding], severity: str | None = None) -> list[str]:
    return [f"{f.line}:{f.severity}:{f.message}" for f in findings if severity in (None, f.severity)]


def only(findings: list[Finding], severity: str) -> list[Finding]:
    return [f for f in findings if f.severity == severity]


@pytest.mark.parametrize("sequence", [True, False])
def test_compliant_member_has_no_findings(sequence: bool) -> None:
    text = records(["/* symbols */", "SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS], sequence=sequence)
    assert findings_for(text) == []


def test_definitions_keep_positions_of_name_and_value() -> None:
    text = records(["SYSDEF    SYMDEF(&HOMEIPADDRESS1.='192.168.10.21')"])
    (d,) = parse_ieasym(text).definitions()
    assert (d.name, d.value) == ("HOMEIPADDRESS1", "192.168.10.21")
    line = text.splitlines()[d.value_span.record]
    assert line[d.value_span.start : d.value_span.end] == "192.168.10.21"
    assert line[d.name_span.start : d.name_span.end] == "&HOMEIPADDRESS1."
    assert d.line == 1


def test_several_symdefs_on_one_line_and_period_optional() -> None:
    text = records(
        [
            "SYSDEF SYMDEF(&HOMEIPADDRESS1='10.1.1.2') SYMDEF(&A.='X')",
            "SYMDEF(&DEFAULTROUTEADDR.='10.1.1.1'),SYMDEF(&B='Y')",
            "SYMDEF(&NAMESERVERADDR1='10.1.1.1')",
        ]
    )
    member = parse_ieasym(text)
    assert [(d.name, d.value, d.line) for d in member.definitions()] == [
        ("HOMEIPADDRESS1", "10.1.1.2", 1),
        ("A", "X", 1),
        ("DEFAULTROUTEADDR", "10.1.1.1", 2),
        ("B", "Y", 2),
        ("NAMESERVERADDR1", "10.1.1.1", 3),
    ]
    assert findings_for(text) == []


def test_columns_72_to_80_are_ignored() -> None:
    # The sequence field holds text that would be a definition if it were read.
    lines = ["SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS]
    text = "".join(line.ljust(71) + "SYMDEF(&X\n" for line in lines)
    assert all(len(r) == 81 for r in text.splitlines(keepends=True))
    assert findings_for(text) == []
    # A definition that starts in column 72 is not a definition.
    text = records(["SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS[:2]]) + " " * 71 + "SYMDEF(&\n"
    found = findings_for(text)
    assert [f.symbol for f in only(found, "error")] == ["NAMESERVERADDR1"]


def test_a_definition_inside_a_comment_spanning_lines_defines_nothing() -> None:
    text = records(
        [
            "SYSDEF    SYSNAME(SYSA)",
            GOOD_DEFS[0],
            "/* the old route:",
            GOOD_DEFS[1],
            "   end of comment */ " + "SYMDEF(&NAMESERVERADDR1.='10.0.0.1')",
        ]
    )
    found = findings_for(text)
    errors = only(found, "error")
    assert [(f.symbol, f.line) for f in errors] == [("DEFAULTROUTEADDR", 1)]
    assert "not defined" in errors[0].message
    assert [d.name for d in parse_ieasym(text).definitions()] == ["HOMEIPADDRESS1", "NAMESERVERADDR1"]


def test_unclosed_comment_is_an_error() -> None:
    text = records(["SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS, "/* never closed"])
    assert messages(findings_for(text), "error") == [
        "5:error:comment opened here is never closed with */; everything after it is ignored"
    ]


def test_a_value_may_take_a_substring_of_a_symbol() -> None:
    text = records(["SYSDEF    SYSNAME(SYSZ25A)", "          SYSCLONE(&SYSNAME(6:2))", *GOOD_DEFS])
    member = parse_ieasym(text)
    assert member.sysdefs[0].parameters == {"SYSNAME": "SYSZ25A", "SYSCLONE": "&SYSNAME(6:2)"}
    assert messages(findings_for(text), "error") == []
    unclosed = records(["SYSDEF    SYSNAME(SYSZ25A)", "          SYSCLONE(&SYSNAME(6:2)", *GOOD_DEFS])
    assert messages(findings_for(unclosed), "error") == [
        "2:error:SYSCLONE( is not closed on its record (unterminated parenthesis); a parameter cannot span records"
    ]


def test_sysdef_over_several_lines_with_filters() -> None:
    text = records(
        [
            "SYSDEF    HWNAME(P01)",
            "          LPARNAME(ZOS25A)",
            "          SYSNAME(SYSZ25A)",
            "          SYSCLONE(5A)",
            "          SYMDEF(&HOMEIPADDRESS1.='10.1.1.2')",
            "SYSDEF    VMUSERID(ZVM1) SYMDEF(&DEFAULTROUTEADDR.='10.1.1.1')",
            "SYSDEF    SYMDEF(&NAMESERVERADDR1.='10.1.1.1')",
        ]
    )
    member = parse_ieasym(text)
    first, second, third = member.sysdefs
    assert [str(f) for f in first.filters] == ["HWNAME(P01)", "LPARNAME(ZOS25A)"]
    assert first.parameters == {"SYSNAME": "SYSZ25A", "SYSCLONE": "5A"}
    assert (first.line, first.last_record) == (1, 4)
    assert second.filtered and not third.filtered
    warnings = only(findings_for(text), "warning")
    assert [(f.symbol, f.line) for f in warnings] == [("HOMEIPADDRESS1", 5), ("DEFAULTROUTEADDR", 6)]
    assert "hardware name and LPAR name differ on Wazi aaS" in warnings[0].message
    assert "HWNAME(P01) LPARNAME(ZOS25A)" in warnings[0].message
    assert "z/VM user ID differs on Wazi aaS" in warnings[1].message
    assert only(findings_for(text), "error") == []


def test_also_defined_under_a_filter_is_a_warning() -> None:
    text = records(
        ["SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS, "SYSDEF LPARNAME(LP1) SYMDEF(&HOMEIPADDRESS1.='10.9.9.9')"]
    )
    (warning,) = findings_for(text)
    assert warning.severity == "warning" and warning.line == 5
    assert "also defined under SYSDEF LPARNAME(LP1)" in warning.message


def test_symbol_defined_twice_is_a_warning() -> None:
    text = records(["SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS, "SYSDEF SYMDEF(&HOMEIPADDRESS1.='10.1.1.9')"])
    (warning,) = findings_for(text)
    assert (warning.severity, warning.line, warning.symbol) == ("warning", 5, "HOMEIPADDRESS1")
    assert "defined twice" in warning.message and "first at line 2" in warning.message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("192.168.10.256", "not an IPv4 address"),
        ("192.168.010.1", "not an IPv4 address"),
        ("10.1.1", "not an IPv4 address"),
        ("HOSTA", "not an IPv4 address"),
    ],
)
def test_wazi_symbol_values_must_be_ipv4(value: str, fragment: str) -> None:
    text = records(["SYSDEF", f"  SYMDEF(&HOMEIPADDRESS1.='{value}')", *GOOD_DEFS[1:]])
    (error,) = findings_for(text)
    assert (error.severity, error.line, error.symbol) == ("error", 2, "HOMEIPADDRESS1")
    assert fragment in error.message


def test_value_longer_than_its_name_is_an_error_unless_it_refers_to_symbols() -> None:
    text = records(
        [
            "SYSDEF    SYMDEF(&ABC='12345')",  # 5 > len('&ABC') == 4
            "          SYMDEF(&ABCD='12345')",  # exactly the length of &ABCD
            "          SYMDEF(&SYSR2='&SYSR1(1:5).2')",  # refers to a symbol: not judged by length
            *GOOD_DEFS,
        ]
    )
    (error,) = findings_for(text)
    assert (error.line, error.symbol) == (1, "ABC")
    assert "may be at most 4" in error.message


def test_wazi_value_referring_to_symbols_is_a_warning() -> None:
    text = records(["SYSDEF SYMDEF(&NETWORK='10.1.1')", "  SYMDEF(&HOMEIPADDRESS1.='&NETWORK..2')", *GOOD_DEFS[1:]])
    (warning,) = findings_for(text)
    assert warning.severity == "warning" and "refers to other symbols" in warning.message


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("1ABC", "must start with a letter"),
        ("ABCDEFGHIJKLMNOPQ", "at most 16"),
        ("AB-C", "is not valid"),
        ("SYSNAME", "set by the system"),
        ("", "1 to 16 characters"),
    ],
)
def test_invalid_symbol_names(name: str, fragment: str) -> None:
    text = records([f"SYSDEF SYMDEF(&{name}='X')", *GOOD_DEFS])
    errors = only(findings_for(text), "error")
    assert len(errors) == 1 and errors[0].line == 1
    assert fragment in errors[0].message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("SYMDEF(&A='X')", "before any SYSDEF"),
        ("SYSDEF SYMDEF(&A='X)", "unterminated quote"),
        ("SYSDEF SYMDEF(&A='X'", "unterminated parenthesis"),
        ("SYSDEF SYMDEF(A='X')", "not of the form"),
        ("SYSDEF GARBAGE", "unexpected text 'GARBAGE'"),
    ],
)
def test_syntax_errors_name_the_line(line: str, fragment: str) -> None:
    text = records(["/* x */", line, "SYSDEF", *GOOD_DEFS])
    errors = only(findings_for(text), "error")
    assert [e.line for e in errors] == [2]
    assert fragment in errors[0].message


def test_unknown_parameter_is_a_warning() -> None:
    text = records(["SYSDEF IEASYM(00)", *GOOD_DEFS])
    assert messages(findings_for(text)) == ["1:warning:unknown IEASYMxx parameter IEASYM"]


def test_missing_symbols_point_at_the_unfiltered_sysdef() -> None:
    text = records(["/* header */", "SYSDEF LPARNAME(X)", "SYSDEF SYSNAME(A)", GOOD_DEFS[0]])
    errors = only(findings_for(text), "error")
    assert [(e.symbol, e.line) for e in errors] == [("DEFAULTROUTEADDR", 3), ("NAMESERVERADDR1", 3)]
    assert "SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')" in errors[0].message


def test_empty_member_misses_all_three() -> None:
    found = findings_for("")
    assert [(f.severity, f.line, f.symbol) for f in found] == [
        ("error", 1, "HOMEIPADDRESS1"),
        ("error", 1, "DEFAULTROUTEADDR"),
        ("error", 1, "NAMESERVERADDR1"),
    ]
