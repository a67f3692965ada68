"""Data sets on a CKD volume image, by name: the functions other parts of the mover call.

    list_datasets(path) -> (volser, [ {name, dsorg, recfm, lrecl, blksize, tracks, extents}, ... ])
    read_member(path, dsn, member) -> [record, ...]      logical records, bytes as stored (EBCDIC)
    read_dataset(path, "DSN(MEMBER)" or "DSN") -> [record, ...]
    member_names(path, dsn) -> [name, ...]

`path` is a plain or gzip'd volume image; a gzip'd one is inflated only as far as needed (`on_read`,
where given, is told how far into the file the reading is).
Errors are MoverError subclasses whose message names the file, data set and member.
"""

import re
from typing import Callable, List, Optional, Tuple

from datamover import pds
from datamover.volume import VolumeImage
from datamover.vtoc import DataSet, Vtoc, dataset_entry, read_vtoc

_SPEC = re.compile(r"^\s*([^()\s]+)\s*(?:\(\s*([^()\s]+)\s*\))?\s*$")


def parse_spec(spec: str) -> Tuple[str, Optional[str]]:
    """'SYS1.PARMLIB(IEASYM00)' -> ('SYS1.PARMLIB', 'IEASYM00'); 'SYS1.SEQ' -> ('SYS1.SEQ', None)."""
    match = _SPEC.match(spec)
    if match is None:
        raise pds.DataSetError(f"{spec!r} is not DSN or DSN(MEMBER)")
    member = match.group(2)
    return pds.dataset_name(match.group(1)), pds.member_name(member) if member else None


def find(volume: VolumeImage, vtoc: Vtoc, dsn: str) -> DataSet:
    ds = vtoc.find(dsn)
    if ds is None:
        raise pds.NotFound(f"{volume.path}: volume {vtoc.volser} holds no data set {dsn}")
    return ds


def list_datasets(path: str, on_read: Optional[Callable[[int], None]] = None) -> Tuple[str, List[dict]]:
    with VolumeImage(path, on_read) as volume:
        vtoc = read_vtoc(volume)
        return vtoc.volser, [dataset_entry(ds, volume.heads) for ds in vtoc.datasets]


def member_names(path: str, dsn: str) -> List[str]:
    with VolumeImage(path) as volume:
        ds = find(volume, read_vtoc(volume), pds.dataset_name(dsn))
        return [e.name for e in pds.directory(volume, ds)]


def records_of(volume: VolumeImage, vtoc: Vtoc, dsn: str, member: Optional[str]) -> List[bytes]:
    return records_in(volume, find(volume, vtoc, dsn), member)


def records_in(volume: VolumeImage, ds: DataSet, member: Optional[str]) -> List[bytes]:
    blocks = pds.member_blocks(volume, ds, member) if member else pds.sequential_blocks(volume, ds)
    return pds.deblock(ds, blocks)


def read_member(path: str, dsn: str, member: str) -> List[bytes]:
    with VolumeImage(path) as volume:
        return records_of(volume, read_vtoc(volume), pds.dataset_name(dsn), pds.member_name(member))


def read_dataset(path: str, spec: str, on_read: Optional[Callable[[int], None]] = None) -> List[bytes]:
    dsn, member = parse_spec(spec)
    with VolumeImage(path, on_read) as volume:
        return records_of(volume, read_vtoc(volume), dsn, member)
