"""Emulated 3390 volumes in the Hercules / P/390 AWS "CKD_P370" format, generated track by track.

Used when Hercules' `dasdinit` is not installed: the image has the same device header and the
same VOL1 label in record 3 of cylinder 0 head 0, so every check that reads a real volume reads
this one too. Tracks can carry deterministic data records so that compression and digests have
something to work on.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

from zimage import devices, names

DEVICE_HEADER = 512
TRACK_SIZE = 56_832  # Hercules' 3390 track image: 56,664 bytes of data plus counts and padding
DEVICE_TYPE_3390 = 0x90
_END_OF_TRACK = b"\xff" * 8
_EBCDIC = "cp037"  # A-Z 0-9 @ # $ and blank share IBM-1047's code points


def header() -> bytes:
    fields = b"CKD_P370" + struct.pack(
        "<IIBBH", devices.TRACKS_PER_CYLINDER, TRACK_SIZE, DEVICE_TYPE_3390, 0, 0
    )  # highcyl 0: a single-file volume, as dasdinit writes it
    return fields.ljust(DEVICE_HEADER, b"\0")


def _count(cyl: int, head: int, record: int, key: bytes, data: bytes) -> bytes:
    return struct.pack(">HHBBH", cyl, head, record, len(key), len(data)) + key + data


def _ebcdic(text: str) -> bytes:
    return text.encode(_EBCDIC)


def label_track(volser: str) -> bytes:
    """Cylinder 0 head 0: R0, the IPL1/IPL2 records (no IPL text) and the VOL1 label."""
    names.volser(volser)
    vol1 = _ebcdic("VOL1" + volser.ljust(6)) + b"\x40" + bytes(5) + _ebcdic(" " * 64)
    body = (
        bytes([0]) + struct.pack(">HH", 0, 0)
        + _count(0, 0, 0, b"", bytes(8))
        + _count(0, 0, 1, _ebcdic("IPL1"), bytes(24))
        + _count(0, 0, 2, _ebcdic("IPL2"), bytes(144))
        + _count(0, 0, 3, _ebcdic("VOL1"), vol1)
        + _END_OF_TRACK
    )
    return body.ljust(TRACK_SIZE, b"\0")


def data_track(cyl: int, head: int, data: bytes = b"") -> bytes:
    body = bytes([0]) + struct.pack(">HH", cyl, head) + _count(cyl, head, 0, b"", bytes(8))
    if data:
        body += _count(cyl, head, 1, b"", data)
    return (body + _END_OF_TRACK).ljust(TRACK_SIZE, b"\0")


def payload(volser: str, cyl: int, head: int, size: int = 4096) -> bytes:
    """Half text-like (compresses well), half pseudo-random (does not), different on every track."""
    seed = hashlib.sha256(f"{volser}/{cyl}/{head}".encode()).digest()
    line = f"{volser} CYL {cyl:05d} HEAD {head:02d} {seed.hex()} ".encode()
    text = (line * (size // len(line) + 1))[: size // 2]
    noise = bytearray()
    block = seed
    while len(noise) < size - len(text):
        block = hashlib.sha256(block).digest()
        noise += block
    return text + bytes(noise[: size - len(text)])


def volume_tracks(volser: str, cylinders: int, data_every: int = 0, data_bytes: int = 4096) -> Iterator[bytes]:
    """The header then every track; with data_every=k, every k-th track holds a data record."""
    if cylinders < 1:
        raise ValueError("a volume needs at least one cylinder")
    yield header()
    for cyl in range(cylinders):
        for head in range(devices.TRACKS_PER_CYLINDER):
            if cyl == 0 and head == 0:
                yield label_track(volser)
                continue
            track_no = cyl * devices.TRACKS_PER_CYLINDER + head
            has_data = data_every and track_no % data_every == 0
            yield data_track(cyl, head, payload(volser, cyl, head, data_bytes) if has_data else b"")


def volume_size(cylinders: int) -> int:
    return DEVICE_HEADER + cylinders * devices.TRACKS_PER_CYLINDER * TRACK_SIZE
