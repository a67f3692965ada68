"""Data set control blocks of the VTOC (DFSMSdfp Advanced Services, "VTOC": DSCB formats).

A DSCB is one VTOC record: a 44-byte key and 96 bytes of data; offsets below are those of the
whole 140-byte DSCB, as the manual gives them. Format 4 (the VTOC itself) comes first; a Format 1
(or 8 on an EAV: same layout) per data set, keyed by its name, holds the attributes and the first
three extents; Format 3 DSCBs hold thirteen more each, chained through the last 5 bytes (CCHHR).

Extent addresses are CCHH: on an EAV, cylinders above 65,520 use 28 bits, the low 16 in CC and
the high 12 in the top of HH; the head is the low 4 bits of HH.
"""

import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

KEY_LENGTH = 44
DATA_LENGTH = 96
FORMAT_1 = 0xF1  # EBCDIC '1'
FORMAT_3 = 0xF3
FORMAT_4 = 0xF4
FORMAT_8 = 0xF8  # EAV: a Format 1 whose data set may have extents above cylinder 65,520
FORMAT_9 = 0xF9
_NAME_CODEC = "cp037"  # data set names: A-Z 0-9 @ # $ . - share their code points with IBM-1047

_DSORG = ((0x80, "IS"), (0x40, "PS"), (0x20, "DA"), (0x10, "CX"), (0x02, "PO"))
_VSAM = 0x08  # second DSORG byte: VSAM (AM)
_PDSE = 0x08  # DS1SMSFG: the data set is a PDSE
_HFS = 0x02  # DS1SMSFG: a z/OS UNIX (HFS) data set


@dataclass(frozen=True)
class Extent:
    """Tracks from (cyl, head) through (end_cyl, end_head), both inclusive."""

    sequence: int
    cyl: int
    head: int
    end_cyl: int
    end_head: int

    def tracks(self, heads: int) -> int:
        return (self.end_cyl * heads + self.end_head) - (self.cyl * heads + self.head) + 1

    def describe(self) -> str:
        return f"{self.cyl}.{self.head}-{self.end_cyl}.{self.end_head}"


@dataclass(frozen=True)
class Format1:
    name: str
    volser: str
    dsorg: str  # PS PO DA IS VS ... or "" when not set
    recfm: str  # F FB V VB U with A/M/S/T, or ""
    lrecl: int
    blksize: int
    keylen: int
    pdse: bool
    hfs: bool
    extents: List[Extent]
    extent_count: int  # DS1NOEPV: all extents, those in Format 3 DSCBs included
    last_used: Tuple[int, int]  # DS1LSTAR: relative track and record of the last block written
    next_dscb: Optional[Tuple[int, int, int]]  # CCHHR of the Format 2/3/9 DSCB, or None


def cchh(raw: bytes) -> Tuple[int, int]:
    """(cylinder, head) of a 4-byte CCHH, with the EAV 28-bit cylinder encoding."""
    cc, hh = struct.unpack(">HH", raw)
    return ((hh & 0xFFF0) << 12) | cc, hh & 0x000F


def encode_cchh(cyl: int, head: int) -> bytes:
    """The 4-byte CCHH of a track (EAV form above cylinder 65,535)."""
    return struct.pack(">HH", cyl & 0xFFFF, ((cyl >> 16) << 4) | head)


def extent(raw: bytes) -> Optional[Extent]:
    """A 10-byte extent description (type, sequence, lower and upper CCHH); None when unused."""
    if raw[0] == 0:
        return None
    low, high = cchh(raw[2:6]), cchh(raw[6:10])
    return Extent(raw[1], low[0], low[1], high[0], high[1])


def _pointer(raw: bytes) -> Optional[Tuple[int, int, int]]:
    if raw == bytes(5):
        return None
    cyl, head = cchh(raw[:4])
    return cyl, head, raw[4]


def dsorg_text(raw: bytes) -> str:
    if raw[1] & _VSAM:
        return "VS"
    names = [name for bit, name in _DSORG if raw[0] & bit]
    text = "".join(names[:1])
    return text + "U" if text and raw[0] & 0x01 else text


def recfm_text(byte: int) -> str:
    kind = {0x80: "F", 0x40: "V", 0xC0: "U"}.get(byte & 0xC0, "")
    if not kind:
        return ""
    flags = "".join(c for bit, c in ((0x10, "B"), (0x08, "S"), (0x20, "T"), (0x04, "A"), (0x02, "M")) if byte & bit)
    return kind + flags


def name_of(key: bytes) -> str:
    return key.decode(_NAME_CODEC).rstrip()


def is_format1(key: bytes, data: bytes) -> bool:
    return len(key) == KEY_LENGTH and len(data) == DATA_LENGTH and data[0] in (FORMAT_1, FORMAT_8)


def format1(key: bytes, data: bytes) -> Format1:
    """Decode a Format 1 or 8 DSCB from its key (the name) and data (DSCB offsets 44-139)."""
    d = data
    smsfg = d[78 - 44]
    ttr = d[98 - 44 : 101 - 44]
    exts = [e for e in (extent(d[o - 44 : o - 34]) for o in (105, 115, 125)) if e is not None]
    return Format1(
        name=name_of(key),
        volser=d[45 - 44 : 51 - 44].decode(_NAME_CODEC).rstrip(),
        dsorg=dsorg_text(d[82 - 44 : 84 - 44]),
        recfm=recfm_text(d[84 - 44]),
        blksize=struct.unpack(">H", d[86 - 44 : 88 - 44])[0],
        lrecl=struct.unpack(">H", d[88 - 44 : 90 - 44])[0],
        keylen=d[90 - 44],
        pdse=bool(smsfg & _PDSE),
        hfs=bool(smsfg & _HFS),
        extents=exts,
        extent_count=d[59 - 44],
        last_used=(struct.unpack(">H", ttr[:2])[0], ttr[2]),
        next_dscb=_pointer(d[135 - 44 : 140 - 44]),
    )


def format3(key: bytes, data: bytes) -> Tuple[List[Extent], Optional[Tuple[int, int, int]]]:
    """The extents of a Format 3 DSCB (four in its key, nine in its data) and the next pointer."""
    raws = [key[4 + 10 * i : 14 + 10 * i] for i in range(4)] + [data[1 + 10 * i : 11 + 10 * i] for i in range(9)]
    exts = [e for e in (extent(r) for r in raws) if e is not None]
    return exts, _pointer(data[135 - 44 : 140 - 44])


def format9_pointer(data: bytes) -> Optional[Tuple[int, int, int]]:
    """A Format 9 DSCB (EAV attributes) chains on to the Format 3 through the same last 5 bytes."""
    return _pointer(data[135 - 44 : 140 - 44])
