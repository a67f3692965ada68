"""Parmlib members as they arrive: IBM-1047 EBCDIC or ASCII/UTF-8, with or without line ends.

A member read with z/OS ``cat`` comes as lines (newline-terminated, EBCDIC NL 0x15 when not
converted); a raw record file is fixed 80-byte records with no line end at all. Everything
here is reversible: ``encode_text(decode_bytes(raw, enc), enc) == raw`` and joining the
records from ``split_records`` gives the text back, so a rendered member keeps its form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["ibm-1047", "utf-8", "latin-1"]

RECORD_LENGTH = 80

# IBM-1047 (z/OS Open Systems Latin-1) byte -> Unicode, one row of 16 per line. Python ships
# cp037, which differs at 0x5F, 0xAD, 0xB0, 0xBA, 0xBB and 0xBD (the brackets, ^ and ¬);
# parmlib text uses brackets rarely but the table must be right for every byte.
_IBM1047 = (
    "\x00\x01\x02\x03\x9c\x09\x86\x7f\x97\x8d\x8e\x0b\x0c\x0d\x0e\x0f"  # 00-0F
    "\x10\x11\x12\x13\x9d\x85\x08\x87\x18\x19\x92\x8f\x1c\x1d\x1e\x1f"  # 10-1F
    "\x80\x81\x82\x83\x84\x0a\x17\x1b\x88\x89\x8a\x8b\x8c\x05\x06\x07"  # 20-2F
    "\x90\x91\x16\x93\x94\x95\x96\x04\x98\x99\x9a\x9b\x14\x15\x9e\x1a"  # 30-3F
    " \xa0\xe2\xe4\xe0\xe1\xe3\xe5\xe7\xf1\xa2.<(+|"  # 40-4F
    "&\xe9\xea\xeb\xe8\xed\xee\xef\xec\xdf!$*);^"  # 50-5F
    "-/\xc2\xc4\xc0\xc1\xc3\xc5\xc7\xd1\xa6,%_>?"  # 60-6F
    "\xf8\xc9\xca\xcb\xc8\xcd\xce\xcf\xcc`:#@'=\x22"  # 70-7F
    "\xd8abcdefghi\xab\xbb\xf0\xfd\xfe\xb1"  # 80-8F
    "\xb0jklmnopqr\xaa\xba\xe6\xb8\xc6\xa4"  # 90-9F
    "\xb5~stuvwxyz\xa1\xbf\xd0[\xde\xae"  # A0-AF
    "\xac\xa3\xa5\xb7\xa9\xa7\xb6\xbc\xbd\xbe\xdd\xa8\xaf]\xb4\xd7"  # B0-BF
    "{ABCDEFGHI\xad\xf4\xf6\xf2\xf3\xf5"  # C0-CF
    "}JKLMNOPQR\xb9\xfb\xfc\xf9\xfa\xff"  # D0-DF
    "\x5c\xf7STUVWXYZ\xb2\xd4\xd6\xd2\xd3\xd5"  # E0-EF
    "0123456789\xb3\xdb\xdc\xd9\xda\x9f"  # F0-FF
)
assert len(_IBM1047) == 256 and len(set(_IBM1047)) == 256

_DECODE = {byte: char for byte, char in enumerate(_IBM1047)}
_ENCODE = {ord(char): byte for byte, char in enumerate(_IBM1047)}

EBCDIC_SPACE = 0x40
EBCDIC_NL = 0x15  # z/OS UNIX newline; decodes to U+0085 (NEL)
LINE_ENDS = ("\r\n", "\n", "\r", "\x85")


def ibm1047_decode(raw: bytes) -> str:
    """Decode IBM-1047 bytes; every byte has exactly one character."""
    return "".join(_DECODE[b] for b in raw)


def ibm1047_encode(text: str) -> bytes:
    """Encode to IBM-1047; a character outside the code page is an error naming it."""
    out = bytearray()
    for index, char in enumerate(text):
        byte = _ENCODE.get(ord(char))
        if byte is None:
            raise ValueError(f"character {char!r} at offset {index} has no IBM-1047 code")
        out.append(byte)
    return bytes(out)


def detect_encoding(raw: bytes) -> Encoding:
    """Tell EBCDIC from ASCII text by its byte statistics.

    EBCDIC text has almost only bytes >= 0x40 (letters and digits are above 0x80), blanks as
    0x40 and never the ASCII newline; ASCII text has blanks 0x20 and digits below 0x40.
    """
    if not raw:
        return "utf-8"
    if b"\n" not in raw:
        high = sum(1 for b in raw if b >= EBCDIC_SPACE or b == EBCDIC_NL)
        if high >= 0.9 * len(raw) and raw.count(EBCDIC_SPACE) > raw.count(0x20):
            return "ibm-1047"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"  # decodes every byte, so the member still round-trips
    return "utf-8"


def decode_bytes(raw: bytes, encoding: Encoding) -> str:
    """Decode without changing anything (EBCDIC NL stays U+0085); reversed by ``encode_text``."""
    if encoding == "ibm-1047":
        return ibm1047_decode(raw)
    return raw.decode(encoding)


def encode_text(text: str, encoding: Encoding) -> bytes:
    if encoding == "ibm-1047":
        return ibm1047_encode(text)
    return text.encode(encoding)


def decode_member(raw: bytes) -> str:
    """Decode a member in whatever form it came; EBCDIC NL line ends become ``\\n``."""
    encoding = detect_encoding(raw)
    text = decode_bytes(raw, encoding)
    if encoding == "ibm-1047":
        text = text.replace("\x85", "\n")
    return text


@dataclass(frozen=True)
class Record:
    """One record of a member: its text and the line end that followed it ('' for none)."""

    text: str
    end: str


def split_records(text: str) -> list[Record]:
    """Split into records keeping each line end, so ``join_records`` gives ``text`` back.

    Text without any line end longer than one record is taken as fixed 80-byte records.
    """
    if not any(end in text for end in LINE_ENDS):
        if not text:
            return []
        return [
            Record(text[i : i + RECORD_LENGTH], "") for i in range(0, len(text), RECORD_LENGTH)
        ]
    records: list[Record] = []
    start = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char in "\n\r\x85":
            end = "\r\n" if text.startswith("\r\n", i) else char
            records.append(Record(text[start:i], end))
            i += len(end)
            start = i
        else:
            i += 1
    if start < len(text):
        records.append(Record(text[start:], ""))
    return records


def join_records(records: list[Record]) -> str:
    return "".join(r.text + r.end for r in records)
