"""Rendering symbol values into IEASYMxx: only the quoted values change, records stay 80 bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_ieasym import GOOD_DEFS, findings_for, records
from zimage.ieasym import RenderError, parse_ieasym, render_ieasym, symbol_name_problem
from zimage.symbols import WAZI_VALUES, render_symbols


def test_values_change_in_place_with_sequence_numbers_untouched() -> None:
    text = records(["/* x */", "SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS])
    out = render_symbols(text, WAZI_VALUES)
    before, after = text.splitlines(), out.splitlines()
    assert len(after) == len(before) and all(len(line) == 80 for line in after)
    assert [line[71:] for line in after] == [line[71:] for line in before]
    assert after[:2] == before[:2]
    assert after[2] == "          SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')".ljust(72) + "00000300"
    assert after[3].rstrip() .startswith("          SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')")
    assert findings_for(out) == []


def test_rest_of_the_record_shifts_within_columns_1_to_71() -> None:
    line = "SYSDEF SYMDEF(&HOMEIPADDRESS1.='10.1.1.2') /* home */"
    text = records([line, *GOOD_DEFS[1:]])
    out = render_ieasym(text, {"HOMEIPADDRESS1": "172.26.100.200"})
    first = out.splitlines()[0]
    assert first == "SYSDEF SYMDEF(&HOMEIPADDRESS1.='172.26.100.200') /* home */".ljust(72) + "00000100"


def test_value_that_does_not_fit_is_refused() -> None:
    line = "SYSDEF SYMDEF(&AB='1') SYMDEF(&HOMEIPADDRESS1.='10.1.1.2') /* fill  */ "
    assert len(line) == 71
    text = records([line, *GOOD_DEFS[1:]])
    with pytest.raises(RenderError, match=r"line 1: the new value does not fit in columns 1-71"):
        render_ieasym(text, {"HOMEIPADDRESS1": "172.26.100.200"})


def test_missing_symdefs_go_into_the_unfiltered_sysdef_with_sequence_numbers_between() -> None:
    text = records(
        ["SYSDEF    SYSNAME(SYSA)", GOOD_DEFS[0], "SYSDEF    LPARNAME(LP1)", "          SYSCLONE(A1)"]
    )
    out = render_symbols(text, WAZI_VALUES)
    lines = out.splitlines()
    assert lines[0] == text.splitlines()[0]
    assert lines[2:4] == [
        "          SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')".ljust(72) + "00000233",
        "          SYMDEF(&NAMESERVERADDR1.='172.26.1.1')".ljust(72) + "00000266",
    ]
    assert lines[4:] == text.splitlines()[2:]
    assert all(len(line) == 80 for line in lines)
    assert findings_for(out) == []


def test_no_room_for_sequence_numbers_leaves_them_blank() -> None:
    text = records(["SYSDEF    SYSNAME(SYSA)", "SYSDEF LPARNAME(X)"], start=1)
    text = text.replace("00000101", "00000002")  # numbers 1 and 2: nothing fits between
    out = render_ieasym(text, {"HOMEIPADDRESS1": "172.26.1.2"})
    assert out.splitlines()[1] == "SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')".rjust(47).ljust(80)


def test_sysdef_is_appended_when_every_sysdef_is_filtered() -> None:
    text = records(
        ["SYSDEF    HWNAME(P01)", "          LPARNAME(ZOS25A)", "          SYMDEF(&HOMEIPADDRESS1.='10.1.1.2')"]
    )
    out = render_symbols(text, WAZI_VALUES)
    lines = out.splitlines()
    assert lines[2] == "          SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')".ljust(72) + "00000300"
    assert lines[3:] == [
        "SYSDEF    SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')".ljust(72) + "00000400",
        "          SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')".ljust(72) + "00000500",
        "          SYMDEF(&NAMESERVERADDR1.='172.26.1.1')".ljust(72) + "00000600",
    ]
    found = findings_for(out)
    assert [f.severity for f in found] == ["warning"]  # the filtered copy remains, as a warning


def test_records_without_line_ends_stay_fixed_80_byte_records() -> None:
    text = records(["SYSDEF    SYSNAME(SYSA)", GOOD_DEFS[0]], sequence=False, newline=None)
    out = render_symbols(text, WAZI_VALUES)
    assert "\n" not in out and len(out) == 4 * 80
    assert out[80 * 2 : 80 * 3].rstrip() == "          SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')"
    assert findings_for(out) == []


def test_crlf_and_unpadded_records_keep_their_form() -> None:
    text = "SYSDEF SYSNAME(A)\r\n  SYMDEF(&HOMEIPADDRESS1.='10.1.1.2')\r\n"
    out = render_symbols(text, WAZI_VALUES)
    assert out == (
        "SYSDEF SYSNAME(A)\r\n  SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')\r\n"
        "  SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')\r\n  SYMDEF(&NAMESERVERADDR1.='172.26.1.1')\r\n"
    )


def test_last_record_without_line_end_gets_one_before_the_insertion() -> None:
    text = "SYSDEF SYSNAME(A)\n  SYMDEF(&A='1')"
    assert render_ieasym(text, {"B": "2"}) == "SYSDEF SYSNAME(A)\n  SYMDEF(&A='1')\n  SYMDEF(&B.='2')"


def test_insertion_skips_a_comment_that_continues_below() -> None:
    text = records(["SYSDEF SYMDEF(&A='1') /* note", "   still the note */", "SYSDEF LPARNAME(X)"])
    out = render_ieasym(text, {"B": "2"})
    assert out.splitlines()[2].startswith(" " * 10 + "SYMDEF(&B.='2')")
    assert [d.name for d in parse_ieasym(out).sysdefs[0].definitions] == ["A", "B"]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"HOMEIPADDRESS1": "172.26.1.256"}, "not an IPv4 address"),
        ({"NAMESERVERADDR1": "ns1"}, "not an IPv4 address"),
        ({"AB": "1234"}, "may be at most 3"),
        ({"9AB": "1"}, "must start with a letter"),
        ({"SYSCLONE": "A1"}, "set by the system"),
        ({"ABC": "it's"}, "cannot contain a quote"),
        ({"ABC": "/*"}, "comment delimiter"),
    ],
)
def test_values_that_break_the_rules_are_refused(values: dict[str, str], fragment: str) -> None:
    text = records(["SYSDEF", *GOOD_DEFS])
    with pytest.raises(RenderError, match=fragment):
        render_symbols(text, values)


def test_member_with_syntax_errors_is_refused() -> None:
    text = records(["SYSDEF SYMDEF(&A='1)", *GOOD_DEFS])
    with pytest.raises(RenderError, match="syntax errors"):
        render_ieasym(text, {"A": "2"})


def test_names_may_be_written_with_ampersand_and_period() -> None:
    text = records(["SYSDEF", *GOOD_DEFS])
    assert render_ieasym(text, {"&HOMEIPADDRESS1.": "10.0.0.9"}) == render_ieasym(text, {"HOMEIPADDRESS1": "10.0.0.9"})


# --- property: rendering the values already present changes nothing ---------------------------

_names = st.one_of(st.from_regex(r"[A-Z@#$][A-Z0-9@#$]{0,7}", fullmatch=True), st.just("HOMEIPADDRESS1"))
_pads = st.text(alphabet=" ,", min_size=1, max_size=3)


@st.composite
def _definition(draw: st.DrawFn) -> str:
    name = draw(_names)
    value = draw(st.text(alphabet="ABCXYZ0123456789.&", max_size=len(name) + 1))
    period = draw(st.sampled_from(["", "."]))
    return f"SYMDEF(&{name}{period}='{value}')"


@st.composite
def _member(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        head = "SYSDEF" + draw(_pads)
        if draw(st.booleans()):
            head += draw(st.sampled_from(["HWNAME(P01)", "LPARNAME(LP1)", "VMUSERID(U1)"])) + " "
        lines.append(head)
        for _ in range(draw(st.integers(0, 3))):
            line = draw(st.sampled_from(["", "  ", "          "])) + draw(_definition())
            extra = draw(_pads) + draw(_definition())
            comment = " /* " + draw(st.text(alphabet="ABC &.='()", max_size=8)) + " */"
            for addition in (extra, comment):
                if draw(st.booleans()) and len(line + addition) <= 71:
                    line += addition
            lines.append(line)
        if draw(st.booleans()):
            lines += ["/* a comment over", "   two records */"]
    sequence = draw(st.booleans())
    newline = draw(st.sampled_from(["\n", "\r\n", None]))
    text = records(lines, sequence=sequence, newline=newline)
    if newline is not None and draw(st.booleans()):
        text = "".join(line.rstrip() + newline for line in text.split(newline)[:-1])  # unpadded records
    return text


def _split(text: str) -> list[str]:
    if "\n" not in text:
        return [text[i : i + 80] for i in range(0, len(text), 80)]
    return text.splitlines()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_member())
def test_rendering_present_values_is_the_identity(text: str) -> None:
    member = parse_ieasym(text)
    assert not [p for p in member.problems if p.severity == "error"]
    present = {}
    for sysdef in member.unfiltered():
        for d in sysdef.definitions:
            present[d.key] = d.value
    values = {
        name: value
        for name, value in present.items()
        if all(d.value == value for d in member.definitions() if d.key == name)
        and not symbol_name_problem(name)
    }
    assert render_ieasym(text, values) == text


@settings(max_examples=100, deadline=None)
@given(_member(), st.ip_addresses(v=4).map(str))
def test_rendering_a_new_value_touches_only_values(text: str, home: str) -> None:
    member = parse_ieasym(text)
    try:
        out = render_symbols(text, {"HOMEIPADDRESS1": home})
    except RenderError as exc:  # a full record has no blanks left for a longer value
        assert all("does not fit in columns 1-71" in p for p in exc.problems)
        return
    after = parse_ieasym(out)
    assert [(d.key, d.value) for d in after.definitions() if d.key != "HOMEIPADDRESS1"] == [
        (d.key, d.value) for d in member.definitions() if d.key != "HOMEIPADDRESS1"
    ]
    assert all(d.value == home for d in after.definitions() if d.key == "HOMEIPADDRESS1")
    old, new = _split(text), _split(out)
    changed = {d.value_span.record for d in member.definitions() if d.key == "HOMEIPADDRESS1"}
    inserted = len(new) - len(old)
    assert inserted in (0, 1) and (inserted == 1) == (not any(
        d.key == "HOMEIPADDRESS1" for s in member.unfiltered() for d in s.definitions))
    # Some alignment of the old records with the new ones (minus the inserted one) must hold
    # every unchanged record as it was, and keep columns 72-80 of the changed ones.
    def aligned(at: int) -> bool:
        rest = new[:at] + new[at + inserted :]
        for i, (a, b) in enumerate(zip(old, rest, strict=True)):
            if i in changed:
                if len(b) != len(a) if len(a) > 71 else len(b) > 71:
                    return False
                if a[71:] != b[71:]:
                    return False
            elif a != b:
                return False
        return True

    assert any(aligned(at) for at in range(len(new) + 1 - inserted))
    if all(len(r) == 80 for r in old):
        assert all(len(r) == 80 for r in new)


def test_single_short_line_without_line_end_is_text_not_a_fixed_record() -> None:
    out = render_ieasym("SYSDEF LPARNAME(X)", {"HOMEIPADDRESS1": "1.2.3.4"})
    assert out == "SYSDEF LPARNAME(X)\nSYSDEF    SYMDEF(&HOMEIPADDRESS1.='1.2.3.4')"


def test_empty_member_gets_a_sysdef() -> None:
    out = render_symbols("", WAZI_VALUES)
    assert out.splitlines()[0] == "SYSDEF    SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')"
    assert findings_for(out) == []


def test_ragged_records_without_line_ends_are_refused() -> None:
    text = records(["SYSDEF SYSNAME(A)"], newline=None) + "SYSDEF"
    with pytest.raises(RenderError, match="not made of whole 80-byte records"):
        render_ieasym(text, {"A": "1"})
