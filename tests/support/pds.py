"""Test volumes with data sets: Hercules dasdload builds the volume (VOL1, VTOC, empty PDS and
sequential data sets); `add_members` then writes members into a PDS as IEBCOPY would leave them:
blocks packed after the last used record, an end-of-file record after each member, the directory
entries in name order, DS1LSTAR updated. Hercules dasdls / dasdcat / dasdpdsu read the result.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from datamover import dscb, pds
from datamover.volume import END_OF_TRACK, HOME_ADDRESS, TrackRecord, VolumeImage
from datamover.vtoc import label, read_vtoc
from zimage.ebcdic import ibm1047_encode

DASDLOAD = shutil.which("dasdload")
_CELLS_3390 = 1729  # 34-byte cells a 3390 track holds after R0 (IBM 3390 track capacity formula)


@dataclass(frozen=True)
class Dataset:
    """One dasdload data set statement: an empty PDS (dir > 0), an empty or TEXT sequential one."""

    name: str
    dsorg: str = "PO"
    recfm: str = "FB"
    lrecl: int = 80
    blksize: int = 3120
    tracks: int = 15
    directory_blocks: int = 10
    text: str | None = None  # sequential data set loaded from this text (one record a line)


def load_volume(
    path: Path, volser: str, datasets: list[Dataset], cylinders: int = 20, vtoc_tracks: int = 5, devtype: str = "3390-1"
) -> Path:
    """A volume made by dasdload with the data sets in order, then the VTOC; one file whatever its size
    (-lfs: without it a volume over 2 GB is split into several files)."""
    if DASDLOAD is None:
        pytest.skip("Hercules dasdload is not installed (Debian package hercules)")
    lines = [f"{volser} {devtype} {cylinders}"]
    for i, ds in enumerate(datasets):
        directory = ds.directory_blocks if ds.dsorg == "PO" else 0
        dcb = f"TRK {ds.tracks} 0 {directory} {ds.dsorg} {ds.recfm} {ds.lrecl} {ds.blksize}"
        if ds.text is not None:
            text_file = path.with_name(f"{path.name}.{i}.txt")
            text_file.write_text(ds.text)
            lines.append(f"{ds.name} TEXT {text_file} {dcb}")
        else:
            lines.append(f"{ds.name} EMPTY {dcb}")
    lines.append(f"SYSVTOC VTOC TRK {vtoc_tracks}")
    control = path.with_name(path.name + ".ctl")
    control.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [DASDLOAD, "-lfs", str(control), str(path), "0"],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        cwd=path.parent,
    )
    return path


def card(text: str, sequence: int | None = None) -> bytes:
    """An 80-byte EBCDIC card: text in columns 1-72, an optional sequence number in 73-80."""
    if len(text) > 72:
        raise ValueError(f"card text of {len(text)} characters: {text!r}")
    tail = f"{sequence:08d}" if sequence is not None else " " * 8
    return ibm1047_encode(text.ljust(72) + tail)


def cards(text: str, numbered: bool = False) -> list[bytes]:
    return [card(line, (i + 1) * 100 if numbered else None) for i, line in enumerate(text.splitlines())]


def _cells(key: int, data: int) -> int:
    key_cells = 0 if key == 0 else 9 + math.ceil((key + 6 * math.ceil((key + 6) / 232) + 6) / 34)
    data_cells = 9 + math.ceil((data + 6 * math.ceil((data + 6) / 232) + 6) / 34)
    return 9 + key_cells + data_cells


def _track_image(volume: VolumeImage, number: int, records: list[tuple[int, bytes, bytes]]) -> bytes:
    """Track `number` rebuilt: its home address, R0, then (record, key, data) in order."""
    old = volume.track(number)
    cyl, head = divmod(number, volume.heads)
    body = bytearray(old[:HOME_ADDRESS])
    body += struct.pack(">HHBBH", cyl, head, 0, 0, 8) + bytes(8)
    for record, key, data in records:
        body += struct.pack(">HHBBH", cyl, head, record, len(key), len(data)) + key + data
    body += END_OF_TRACK
    if len(body) > volume.track_size:
        raise ValueError(f"track {number}: {len(body)} bytes do not fit in a {volume.track_size}-byte track image")
    return bytes(body.ljust(volume.track_size, b"\0"))


def _blocks(records: list[bytes], lrecl: int, blksize: int) -> list[bytes]:
    per_block = max(1, blksize // lrecl)
    for r in records:
        if len(r) != lrecl:
            raise ValueError(f"record of {len(r)} bytes, LRECL is {lrecl}")
    return [b"".join(records[i : i + per_block]) for i in range(0, len(records), per_block)] or []


def _directory_blocks(entries: dict[str, tuple[int, int]], count: int) -> list[tuple[bytes, bytes]]:
    """(key, data) of `count` directory blocks holding the entries in name order, then X'FF' x 8."""
    raw = [n.ljust(8).encode("cp037") + struct.pack(">HBB", tt, r, 0) for n, (tt, r) in sorted(entries.items())]
    raw.append(pds.END_OF_DIRECTORY + bytes(4))
    blocks: list[tuple[bytes, bytes]] = []
    current: list[bytes] = []
    for entry in raw:
        if 2 + 12 * (len(current) + 1) > pds.DIRECTORY_BLOCK:
            blocks.append((current[-1][:8], _block_data(current)))
            current = []
        current.append(entry)
    blocks.append((pds.END_OF_DIRECTORY, _block_data(current)))
    if len(blocks) > count:
        raise ValueError(f"{len(entries)} members need {len(blocks)} directory blocks; the PDS has {count}")
    return blocks


def _block_data(entries: list[bytes]) -> bytes:
    used = 2 + sum(len(e) for e in entries)
    return (struct.pack(">H", used) + b"".join(entries)).ljust(pds.DIRECTORY_BLOCK, b"\0")


def add_members(path: Path, dsn: str, members: dict[str, list[bytes]]) -> None:
    """Write members (logical records, EBCDIC) into PDS `dsn` of the plain volume image `path`."""
    with VolumeImage(str(path)) as volume:
        ds = read_vtoc(volume).find(dsn)
        assert ds is not None, f"{dsn} is not on {path}"
        heads = volume.heads
        a = ds.attributes
        existing = {e.name: e.ttr for e in pds.directory(volume, ds)}
        directory_records = [(ds.absolute_track(0, heads), r) for r in volume.records(ds.absolute_track(0, heads))]
        dir_count = sum(1 for _, r in directory_records if len(r.key) == 8)
        tt, last = a.last_used
        writes: dict[int, bytes] = {}
        track_records: list[tuple[int, bytes, bytes]] = [
            (r.record, r.key, r.data) for r in volume.records(ds.absolute_track(tt, heads)) if 0 < r.record <= last
        ]

        def used_cells() -> int:
            return sum(_cells(len(k), len(d)) for _, k, d in track_records)

        def put(key: bytes, data: bytes) -> tuple[int, int]:
            nonlocal tt, track_records
            if used_cells() + _cells(len(key), len(data)) > _CELLS_3390:
                writes[ds.absolute_track(tt, heads)] = _track_image(volume, ds.absolute_track(tt, heads), track_records)
                tt += 1
                if tt >= ds.tracks(heads):
                    raise ValueError(f"{dsn} is full")
                track_records = []
            record = len(track_records) + 1
            track_records.append((record, key, data))
            return tt, record

        for name, records in members.items():
            blocks = _blocks(records, a.lrecl, a.blksize)
            start = put(b"", blocks[0]) if blocks else None
            for block in blocks[1:]:
                put(b"", block)
            eof = put(b"", b"")
            existing[name] = start or eof
        writes[ds.absolute_track(tt, heads)] = _track_image(volume, ds.absolute_track(tt, heads), track_records)
        last_used = (tt, track_records[-1][0])
        new_dir = _directory_blocks(existing, dir_count)
        dir_track = ds.absolute_track(0, heads)
        dir_offsets = [(r.data_offset, r) for _, r in directory_records if len(r.key) == 8]
        f1_offset = _format1_offset(volume, dsn)
        base = volume.track_offset
    with open(path, "r+b") as f:
        for number, image in sorted(writes.items()):
            if number == dir_track:
                image = _with_directory(image, dir_offsets, new_dir)
            f.seek(base(number))
            f.write(image)
        if dir_track not in writes:
            f.seek(base(dir_track))
            image = _with_directory(f.read(volume.track_size), dir_offsets, new_dir)
            f.seek(base(dir_track))
            f.write(image)
        f.seek(f1_offset + 98 - dscb.KEY_LENGTH)  # DS1LSTAR
        f.write(struct.pack(">HB", *last_used))


def _with_directory(image: bytes, offsets: list[tuple[int, TrackRecord]], blocks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(image)
    for i, (offset, _rec) in enumerate(offsets):
        if i >= len(blocks):
            break
        key, data = blocks[i]
        out[offset - 8 : offset] = key
        out[offset : offset + pds.DIRECTORY_BLOCK] = data
    return bytes(out)


def _format1_offset(volume: VolumeImage, dsn: str) -> int:
    """File offset of the data part of `dsn`'s Format 1 DSCB."""
    _volser, (cyl, head, _record) = label(volume)
    number = volume.track_number(cyl, head)
    for _ in range(volume.heads * 4):
        for rec in volume.records(number):
            if dscb.is_format1(rec.key, rec.data) and dscb.name_of(rec.key) == dsn:
                return volume.track_offset(number) + rec.data_offset
        number += 1
    raise AssertionError(f"no Format 1 DSCB for {dsn}")


def set_smsfg(volume: Path, dsn: str, flags: int) -> None:
    """Set DS1SMSFG of a data set's Format 1 DSCB (X'08': PDSE), as a volume of a PDSE would hold it."""
    with VolumeImage(str(volume)) as image:
        offset = _format1_offset(image, dsn)
    with volume.open("r+b") as f:
        f.seek(offset + 78 - dscb.KEY_LENGTH)
        f.write(bytes([flags]))


def split_extents(volume: Path, dsn: str, pieces: list[int]) -> None:
    """Describe `dsn`'s one extent as consecutive extents of `pieces` tracks each (the last takes the
    rest): three in the Format 1, the others in a Format 3 DSCB written into a free VTOC slot, as a
    data set that grew by secondary allocations is described. The tracks stay where they are."""
    with VolumeImage(str(volume)) as image:
        ds = read_vtoc(image).find(dsn)
        assert ds is not None and len(ds.extents) == 1
        heads, start = image.heads, ds.absolute_track(0, image.heads)
        total = ds.tracks(heads)
        bounds, at = [], 0
        for size in [*pieces, total - sum(pieces)]:
            bounds.append((start + at, start + at + size - 1))
            at += size
        assert at == total and len(bounds) <= 16
        raw = [
            bytes([0x01, i]) + dscb.encode_cchh(*divmod(a, heads)) + dscb.encode_cchh(*divmod(b, heads))
            for i, (a, b) in enumerate(bounds)
        ]
        f1 = _format1_offset(image, dsn)
        free = _free_dscb(image)
    with volume.open("r+b") as f:
        f.seek(f1 + 59 - dscb.KEY_LENGTH)
        f.write(bytes([len(raw)]))
        f.seek(f1 + 105 - dscb.KEY_LENGTH)
        f.write(b"".join(raw[:3]).ljust(30, b"\0"))
        if len(raw) > 3:
            number, record, key_at = free
            f.seek(f1 + 135 - dscb.KEY_LENGTH)
            f.write(dscb.encode_cchh(*divmod(number, heads)) + bytes([record]))
            more = raw[3:]
            key = b"\x03" * 4 + b"".join(more[:4]).ljust(40, b"\0")
            data = b"\xf3" + b"".join(more[4:13]).ljust(90, b"\0") + bytes(5)
            f.seek(key_at)
            f.write(key + data)


def _free_dscb(image: VolumeImage) -> tuple[int, int, int]:
    """(track, record, file offset of the key) of the first Format 0 (free) DSCB of the VTOC."""
    _volser, (cyl, head, _record) = label(image)
    number = image.track_number(cyl, head)
    for n in range(number, number + image.heads):
        for rec in image.records(n):
            if len(rec.key) == dscb.KEY_LENGTH and rec.key == bytes(44) and rec.data[0] == 0:
                return n, rec.record, image.track_offset(n) + rec.data_offset - dscb.KEY_LENGTH
    raise AssertionError("no free DSCB in the VTOC")
