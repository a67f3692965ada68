"""Partitioned (PDS) and sequential data sets on a volume image: directory, members, records.

A PDS starts with its directory: 256-byte blocks with an 8-byte key (the last name in the block);
each block begins with the count of bytes it uses, then entries of name (8), TTR (3), C (1: alias
bit, user TTR count, user data halfwords in the low 5 bits) and the user data; the name X'FF' x 8
ends the directory. A member starts at its TTR (track relative to the data set, record number)
and runs to the next end-of-file record (data length 0), over as many tracks as it needs.
A PDSE keeps its members in pages that only its own access method reads: out of reach here.
"""

import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

from datamover import dscb
from datamover.errors import MoverError
from datamover.volume import VolumeImage
from datamover.vtoc import DataSet

DIRECTORY_BLOCK = 256
END_OF_DIRECTORY = b"\xff" * 8
_NAME = "cp037"


class DataSetError(MoverError):
    """A data set or member cannot be read; the message names the volume, data set and member."""


class NotFound(DataSetError):
    """The volume holds no such data set, or the PDS no such member."""


@dataclass(frozen=True)
class Block:
    """A data block as it lies on the volume: the track and the offset of its data in the track."""

    track: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class DirectoryEntry:
    name: str
    ttr: Tuple[int, int]  # relative track, record
    alias: bool
    user_data: bytes


def _where(volume: VolumeImage, ds: DataSet, member: Optional[str] = None) -> str:
    return f"{volume.path}: {ds.name}" + (f"({member})" if member else "")


def check_partitioned(volume: VolumeImage, ds: DataSet) -> None:
    a = ds.attributes
    if a.pdse:
        raise DataSetError(
            f"{_where(volume, ds)} is a PDSE: its members cannot be read from a volume image "
            "(only a PDS can); copy the members into a PDS"
        )
    if a.dsorg != "PO":
        raise DataSetError(f"{_where(volume, ds)} is not partitioned (DSORG {a.dsorg or 'not set'})")


def _blocks_from(volume: VolumeImage, ds: DataSet, track: int, record: int, what: str) -> List[Block]:
    """The data blocks from relative (track, record) up to the end-of-file record."""
    heads = volume.heads
    total = ds.tracks(heads)
    blocks: List[Block] = []
    relative = track
    while relative < total:
        number = ds.absolute_track(relative, heads)
        assert number is not None
        for rec in volume.records(number):
            if rec.record == 0 or (relative == track and rec.record < record):
                continue
            if not rec.data:
                return blocks
            blocks.append(Block(number, rec.data_offset, rec.data))
        relative += 1
    raise DataSetError(f"{what}: no end-of-file record before the end of the data set's extents")


def directory(volume: VolumeImage, ds: DataSet) -> List[DirectoryEntry]:
    check_partitioned(volume, ds)
    entries: List[DirectoryEntry] = []
    for block in _blocks_from(volume, ds, 0, 1, f"{_where(volume, ds)}: directory"):
        data = block.data
        if len(data) != DIRECTORY_BLOCK:
            raise DataSetError(f"{_where(volume, ds)}: directory block of {len(data)} bytes, expected 256")
        used = struct.unpack(">H", data[:2])[0]
        pos = 2
        while pos + 12 <= min(used, DIRECTORY_BLOCK):
            name = data[pos : pos + 8]
            if name == END_OF_DIRECTORY:
                return entries
            tt, r, c = struct.unpack(">HBB", data[pos + 8 : pos + 12])
            halfwords = c & 0x1F
            entries.append(
                DirectoryEntry(
                    name.decode(_NAME).rstrip(), (tt, r), bool(c & 0x80), data[pos + 12 : pos + 12 + 2 * halfwords]
                )
            )
            pos += 12 + 2 * halfwords
    return entries


def member_blocks(volume: VolumeImage, ds: DataSet, member: str) -> List[Block]:
    entry = next((e for e in directory(volume, ds) if e.name == member), None)
    if entry is None:
        raise NotFound(f"{_where(volume, ds, member)}: no such member")
    return _blocks_from(volume, ds, entry.ttr[0], entry.ttr[1], _where(volume, ds, member))


def sequential_blocks(volume: VolumeImage, ds: DataSet) -> List[Block]:
    if ds.attributes.dsorg not in ("PS", "PSU", "DA"):
        raise DataSetError(f"{_where(volume, ds)} is not sequential (DSORG {ds.attributes.dsorg or 'not set'})")
    return _blocks_from(volume, ds, 0, 1, _where(volume, ds))


def deblock(ds: DataSet, blocks: List[Block]) -> List[bytes]:
    """The logical records of the blocks: fixed by LRECL, variable by RDW, undefined as blocks."""
    a = ds.attributes
    records: List[bytes] = []
    if a.recfm.startswith("F") and a.lrecl:
        for block in blocks:
            data = block.data
            if len(data) % a.lrecl:
                raise DataSetError(f"{ds.name}: a block of {len(data)} bytes is not a multiple of LRECL {a.lrecl}")
            records += [data[i : i + a.lrecl] for i in range(0, len(data), a.lrecl)]
    elif a.recfm.startswith("V"):
        for block in blocks:
            data = block.data
            end = min(len(data), struct.unpack(">H", data[:2])[0]) if len(data) >= 4 else 0
            pos = 4
            while pos + 4 <= end:
                length = struct.unpack(">H", data[pos : pos + 2])[0]
                if length < 4 or pos + length > end:
                    raise DataSetError(f"{ds.name}: a record descriptor word gives {length} bytes")
                records.append(data[pos + 4 : pos + length])
                pos += length
    else:
        records = [b.data for b in blocks]
    return records


def dataset_name(name: str) -> str:
    """A data set name checked and upper-cased: qualifiers of 1-8 of A-Z 0-9 @ # $ -, 44 at most."""
    upper = name.upper()
    quals = upper.split(".")
    ok = len(upper) <= dscb.KEY_LENGTH and all(
        1 <= len(q) <= 8 and (q[0].isalpha() or q[0] in "@#$") and all(c.isalnum() or c in "@#$-" for c in q)
        for q in quals
    )
    if not ok or not upper.isascii():
        raise DataSetError(
            f"{name!r} is not a data set name (qualifiers of 1-8 characters A-Z 0-9 @ # $ -, "
            "starting with a letter or @ # $; 44 characters at most)"
        )
    return upper


def member_name(name: str) -> str:
    upper = name.upper()
    if not (
        1 <= len(upper) <= 8
        and upper.isascii()
        and (upper[0].isalpha() or upper[0] in "@#$")
        and all(c.isalnum() or c in "@#$" for c in upper)
    ):
        raise DataSetError(f"{name!r} is not a member name (1-8 characters A-Z 0-9 @ # $, not starting with a digit)")
    return upper
