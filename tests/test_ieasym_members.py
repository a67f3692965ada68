"""Members as they arrive: IBM-1047 or ASCII, lines or fixed 80-byte records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_ieasym import GOOD_DEFS, records
from zimage.ebcdic import (
    Record,
    decode_bytes,
    decode_member,
    detect_encoding,
    encode_text,
    ibm1047_decode,
    ibm1047_encode,
    join_records,
    split_records,
)
from zimage.symbols import Member, check_members

# Where IBM-1047 and cp037 (the EBCDIC code page Python ships) disagree.
IBM1047_NOT_CP037 = {0x5F: "^", 0xAD: "[", 0xB0: "¬", 0xBA: "Ý", 0xBB: "¨", 0xBD: "]"}


def test_ibm1047_table() -> None:
    every = bytes(range(256))
    text = ibm1047_decode(every)
    assert ibm1047_encode(text) == every
    cp037 = every.decode("cp037")
    for byte in range(256):
        expected = IBM1047_NOT_CP037.get(byte, cp037[byte])
        assert text[byte] == expected, hex(byte)
    assert ibm1047_decode(b"\xc1\xf0\x40\x50\x7d\x4d\x5d\x4b\x61\x5c\x15\x25") == "A0 &'()./*\x85\n"


def test_unmappable_character_is_named() -> None:
    with pytest.raises(ValueError, match="'€' at offset 1 has no IBM-1047 code"):
        ibm1047_encode("A€")


EBCDIC_LINES = ibm1047_encode("SYSDEF    SYSNAME(SYSA)\x85  SYMDEF(&A='1')\x85")
EBCDIC_FIXED = ibm1047_encode(records(["SYSDEF    SYSNAME(SYSA)", *GOOD_DEFS], newline=None))


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (EBCDIC_LINES, "ibm-1047"),
        (EBCDIC_FIXED, "ibm-1047"),
        (b"SYSDEF    SYSNAME(SYSA)\n", "utf-8"),
        (records(["SYSDEF    SYSNAME(SYSA)"], newline=None).encode(), "utf-8"),
        ("; caf\u00e9\n".encode(), "utf-8"),
        (b"; caf\xe9\n", "latin-1"),
        (b"", "utf-8"),
    ],
)
def test_detect_encoding(raw: bytes, encoding: str) -> None:
    assert detect_encoding(raw) == encoding
    assert encode_text(decode_bytes(raw, detect_encoding(raw)), detect_encoding(raw)) == raw


def test_decode_member_turns_ebcdic_newlines_into_line_feeds() -> None:
    assert decode_member(EBCDIC_LINES) == "SYSDEF    SYSNAME(SYSA)\n  SYMDEF(&A='1')\n"
    assert decode_member(b"A\r\nB") == "A\r\nB"


def test_split_records() -> None:
    assert split_records("a\nb\r\nc\rd\x85e") == [
        Record("a", "\n"), Record("b", "\r\n"), Record("c", "\r"), Record("d", "\x85"), Record("e", "")
    ]
    fixed = "x" * 80 + "y" * 80
    assert split_records(fixed) == [Record("x" * 80, ""), Record("y" * 80, "")]
    assert split_records("") == []


@given(st.text(alphabet="ab \n\r\x85", max_size=200))
def test_records_join_back(text: str) -> None:
    assert join_records(split_records(text)) == text


@pytest.mark.parametrize("sequence", [True, False])
@pytest.mark.parametrize("newline", ["\n", None])
def test_checks_read_ebcdic_and_ascii_alike(sequence: bool, newline: str | None) -> None:
    text = records(["SYSDEF    SYSNAME(SYSA)", GOOD_DEFS[0]], sequence=sequence, newline=newline)
    raw = ibm1047_encode(text.replace("\n", "\x85"))
    as_ascii = check_members(Member(name="IEASYM00", text=text))
    as_ebcdic = check_members(Member(name="IEASYM00", text=raw))
    assert as_ascii == as_ebcdic
    assert [(f.severity, f.symbol) for f in as_ebcdic] == [("error", "DEFAULTROUTEADDR"), ("error", "NAMESERVERADDR1")]
