"""LOADPARM: the 8-character IPL parameter (DESIGN.md §4).

Positions: 1-4 IODF device number (hex), 5-6 LOADxx suffix, 7 IMSI character, 8 alternate nucleus.
Shorter values are allowed; the missing positions take the system defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IODF = re.compile(r"^[0-9A-F]{1,4}$")
_SUFFIX = re.compile(r"^[A-Z0-9]{1,2}$")
_IMSI = set(" .ACDMPST")
_NUCLEUS = set(" .0123456789")


@dataclass(frozen=True)
class Loadparm:
    iodf_devnum: str
    load_suffix: str
    imsi: str
    nucleus: str

    @property
    def text(self) -> str:
        return (self.iodf_devnum + self.load_suffix + self.imsi + self.nucleus).rstrip()


def parse(value: str) -> Loadparm:
    """Split and check a LOADPARM; raises ValueError naming the offending positions."""
    if not isinstance(value, str):
        raise ValueError(f"LOADPARM {value!r}: expected text of up to 8 characters; quote it in YAML")
    text = value.upper()
    if not 1 <= len(text) <= 8:
        raise ValueError(f"LOADPARM {value!r}: expected 1-8 characters, got {len(text)}")
    padded = text.ljust(8)
    iodf, suffix, imsi, nucleus = padded[0:4], padded[4:6], padded[6], padded[7]
    # With later positions present, all four IODF positions must be filled.
    if not _IODF.fullmatch(iodf if len(text) > 4 else iodf.rstrip()):
        raise ValueError(
            f"LOADPARM {value!r}: positions 1-4 must be the IODF device number (hex digits), got {iodf!r}"
        )
    if suffix.strip() and not _SUFFIX.fullmatch(suffix):
        raise ValueError(
            f"LOADPARM {value!r}: positions 5-6 must be the LOADxx suffix (2 of A-Z 0-9), got {suffix!r}"
        )
    if imsi not in _IMSI:
        raise ValueError(
            f"LOADPARM {value!r}: position 7 must be an IMSI character (blank . A C D M P S T), got {imsi!r}"
        )
    if nucleus not in _NUCLEUS:
        raise ValueError(
            f"LOADPARM {value!r}: position 8 must be the alternate nucleus (0-9, blank or .), got {nucleus!r}"
        )
    return Loadparm(iodf.rstrip(), suffix, imsi, nucleus)
