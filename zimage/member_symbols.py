"""Set system symbols in the records of an IEASYMxx member read from a volume image (pure).

    member_text(records) -> str
    set_symbols_in_place(records, {symbol: value}) -> new records, each as long as the old one

The records are the member's logical records as stored (IBM-1047, usually 80 bytes each). The
data mover rewrites a member only in place, so the result has as many records as the member and
every record keeps its length: a value that does not fit in columns 1-71 of its record, or a
symbol without a SYMDEF in a SYSDEF without filters (adding one would add a record), is refused
with a `RenderError` naming it. The value rules and the rendering are `zimage.symbols`' own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from zimage.ebcdic import ibm1047_decode, ibm1047_encode
from zimage.ieasym import RenderError, normalize_name, parse_ieasym
from zimage.symbols import render_symbols


def member_text(records: Sequence[bytes]) -> str:
    """The member as text, one line per record (columns 72-80 kept)."""
    return "\n".join(ibm1047_decode(bytes(r)) for r in records)


def set_symbols_in_place(records: Sequence[bytes], values: Mapping[str, str]) -> list[bytes]:
    lines = [ibm1047_decode(bytes(r)) for r in records]
    for number, line in enumerate(lines, 1):
        if any(c in line for c in "\n\r\x85"):
            raise RenderError([f"line {number}: the record holds a line-end character; it cannot be rewritten as text"])
    text = "\n".join(lines)
    parsed = parse_ieasym(text)
    defined = {d.key for s in parsed.unfiltered() for d in s.definitions}
    missing = [normalize_name(n) for n in values if normalize_name(n) not in defined]
    if missing:
        raise RenderError(
            [
                f"&{n} has no SYMDEF in a SYSDEF without filters; a member on a volume is rewritten "
                f"only in place, so no record can be added: add SYMDEF(&{n}.='...') to the member "
                "on the source system"
                for n in missing
            ]
        )
    new_lines = render_symbols(text, values).split("\n")
    if len(new_lines) != len(lines):
        raise RenderError([f"setting the symbols would make {len(new_lines)} records of {len(lines)}"])
    for number, (old, new) in enumerate(zip(lines, new_lines, strict=True), 1):
        if len(new) != len(old):
            raise RenderError([f"line {number}: the record would be {len(new)} bytes instead of {len(old)}"])
    try:
        return [ibm1047_encode(line) for line in new_lines]
    except ValueError as exc:  # a value with a character IBM-1047 lacks
        raise RenderError([str(exc)]) from None
