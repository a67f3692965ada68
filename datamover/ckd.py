"""Volume label check of emulated CKD images (Hercules / P/390 AWS "CKD_P370" format).

Layout: a 512-byte device header ("CKD_P370", heads and track size little-endian), then every track
as a 5-byte home address (bin, CC, HH) followed by records, each a count field CCHHRKDD (key length
K, data length DD big-endian) + key + data, ending with eight X'FF'. Record 3 of cylinder 0 head 0
is the volume label: key "VOL1", data "VOL1" + VOLSER, in EBCDIC.
"""

import struct
from typing import Optional

DEVICE_HEADER = 512
UNCOMPRESSED_ID = b"CKD_P370"
# How much of the start of a volume the check needs: device header + the largest track of any
# device Hercules emulates (3390: 56,832 bytes).
HEAD_BYTES = DEVICE_HEADER + 64 * 1024
_END_OF_TRACK = b"\xff" * 8
_EBCDIC = "cp037"  # A-Z, 0-9, @ # $ and blank have the same code points as IBM-1047


def check_label(head: bytes, volser: str) -> tuple[bool, str]:
    """(ok, note) for the first bytes of a volume image; non-CKD images pass with a note."""
    ident = head[:8]
    if ident != UNCOMPRESSED_ID:
        if ident.startswith(b"CKD_"):
            return True, f"{ident.decode('ascii', 'replace')} image (compressed CKD): label not checked"
        return True, "not a CKD_P370 image: label not checked"
    label = _find_vol1(head)
    if label is None:
        return False, "CKD_P370 image without a VOL1 label in record 3 of cylinder 0 head 0"
    found = label[4:10].decode(_EBCDIC).rstrip()
    if found != volser:
        return False, f"VOL1 label names {found!r}, manifest names {volser!r}"
    return True, f"VOL1 label {found} verified"


def label_volser(head: bytes) -> Optional[str]:
    """The VOLSER in the VOL1 label of a CKD_P370 image, or None (no label, or not such an image)."""
    label = _find_vol1(head) if head[:8] == UNCOMPRESSED_ID else None
    return None if label is None else label[4:10].decode(_EBCDIC).rstrip()


def cylinders(head: bytes, size: int) -> Optional[int]:
    """Cylinders of a CKD_P370 image of `size` bytes, from its device header."""
    if head[:8] != UNCOMPRESSED_ID or len(head) < 16:
        return None
    heads, track_size = struct.unpack_from("<II", head, 8)
    return (size - DEVICE_HEADER) // (heads * track_size) if heads and track_size else None


def _find_vol1(head: bytes) -> Optional[bytes]:
    """The data of record 3 of cylinder 0 head 0 when its key is VOL1, else None."""
    if len(head) < DEVICE_HEADER + 5:
        return None
    _heads, track_size = struct.unpack_from("<II", head, 8)
    end = min(len(head), DEVICE_HEADER + track_size)
    pos = DEVICE_HEADER + 5  # skip the home address
    vol1 = "VOL1".encode(_EBCDIC)
    while pos + 8 <= end:
        count = head[pos : pos + 8]
        if count == _END_OF_TRACK:
            return None
        cyl, hd, rec, klen, dlen = struct.unpack(">HHBBH", count)
        key_at = pos + 8
        data_at = key_at + klen
        pos = data_at + dlen
        if pos > end:
            return None
        if (cyl, hd, rec) == (0, 0, 3):
            key, data = head[key_at:data_at], head[data_at:pos]
            return data if key == vol1 and data[:4] == vol1 and len(data) >= 10 else None
    return None
