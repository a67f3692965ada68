"""The volume's table of contents: VOL1 label -> VTOC -> the data sets with their extents.

The VOL1 label (record 3 of cylinder 0 head 0) holds the VOLSER and the CCHHR of the Format 4
DSCB, the first record of the VTOC; the Format 4 gives the VTOC's extent and the address of the
last Format 1 in use, so the VTOC is read up to there and no further.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

from datamover import dscb
from datamover.errors import MoverError
from datamover.volume import TrackRecord, VolumeImage

_VOL1 = "VOL1".encode("cp037")
_MAX_CHAIN = 64  # Format 3 DSCBs of one data set: far more than the 123 extents a data set may have


class VtocError(MoverError):
    """The label or the VTOC cannot be read; the message names the volume and what is wrong."""


@dataclass(frozen=True)
class DataSet:
    """A data set as its DSCBs describe it, with every extent (Format 3 ones included)."""

    attributes: dscb.Format1
    extents: List[dscb.Extent]

    @property
    def name(self) -> str:
        return self.attributes.name

    def tracks(self, heads: int) -> int:
        return sum(e.tracks(heads) for e in self.extents)

    def absolute_track(self, relative: int, heads: int) -> Optional[int]:
        """The volume's track number of relative track `relative`, or None past the last extent."""
        for ext in self.extents:
            count = ext.tracks(heads)
            if relative < count:
                return ext.cyl * heads + ext.head + relative
            relative -= count
        return None


@dataclass(frozen=True)
class Vtoc:
    volser: str
    heads: int
    datasets: List[DataSet]

    def find(self, name: str) -> Optional[DataSet]:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        return None


def label(volume: VolumeImage) -> Tuple[str, Tuple[int, int, int]]:
    """(VOLSER, CCHHR of the Format 4 DSCB) from the VOL1 label."""
    vol1 = volume.record(0, 3)
    if vol1 is None or vol1.key != _VOL1 or vol1.data[:4] != _VOL1 or len(vol1.data) < 16:
        raise VtocError(f"{volume.path}: no VOL1 label in record 3 of cylinder 0 head 0")
    volser = dscb.name_of(vol1.data[4:10])
    cyl, head = dscb.cchh(vol1.data[11:15])
    pointer = (cyl, head, vol1.data[15])
    if pointer == (0, 0, 0):
        raise VtocError(f"{volume.path}: volume {volser} has no VTOC (the VOL1 label's VTOC pointer is zero)")
    return volser, pointer


def _dscb_at(volume: VolumeImage, pointer: Tuple[int, int, int], what: str) -> TrackRecord:
    cyl, head, record = pointer
    rec = volume.record(volume.track_number(cyl, head), record)
    if rec is None or len(rec.key) != dscb.KEY_LENGTH or len(rec.data) != dscb.DATA_LENGTH:
        raise VtocError(f"{volume.path}: {what} at cylinder {cyl} head {head} record {record} is not a DSCB")
    return rec


def _chained_extents(volume: VolumeImage, f1: dscb.Format1) -> List[dscb.Extent]:
    extents = list(f1.extents)
    pointer = f1.next_dscb
    for _ in range(_MAX_CHAIN):
        if pointer is None or len(extents) >= f1.extent_count:
            return extents
        rec = _dscb_at(volume, pointer, f"a DSCB chained from {f1.name}")
        if rec.data[0] == dscb.FORMAT_3:
            more, pointer = dscb.format3(rec.key, rec.data)
            extents += more
        elif rec.data[0] == dscb.FORMAT_9:
            pointer = dscb.format9_pointer(rec.data)
        else:
            return extents  # a Format 2 (ISAM) ends what can be followed
    raise VtocError(f"{volume.path}: the DSCB chain of {f1.name} does not end")


def read_vtoc(volume: VolumeImage) -> Vtoc:
    volser, pointer = label(volume)
    f4 = _dscb_at(volume, pointer, "the Format 4 DSCB the VOL1 label points to")
    if f4.data[0] != dscb.FORMAT_4:
        raise VtocError(
            f"{volume.path}: the VOL1 label points to a Format {f4.data[0] & 0x0F} DSCB, not the "
            "Format 4 that starts the VTOC"
        )
    vtoc_extent = dscb.extent(f4.data[105 - 44 : 115 - 44])
    if vtoc_extent is None:
        raise VtocError(f"{volume.path}: the Format 4 DSCB has no VTOC extent")
    high_cyl, high_head = dscb.cchh(f4.data[45 - 44 : 49 - 44])
    first = volume.track_number(vtoc_extent.cyl, vtoc_extent.head)
    last = volume.track_number(vtoc_extent.end_cyl, vtoc_extent.end_head)
    if (high_cyl, high_head) != (0, 0):  # the last track holding a Format 1, when the Format 4 says
        last = min(last, max(first, volume.track_number(high_cyl, high_head)))
    found: List[dscb.Format1] = []
    for number in range(first, last + 1):
        for rec in volume.records(number):
            if dscb.is_format1(rec.key, rec.data):
                found.append(dscb.format1(rec.key, rec.data))
    datasets = [DataSet(f1, _chained_extents(volume, f1)) for f1 in found]
    return Vtoc(volser=volser, heads=volume.heads, datasets=datasets)


def dataset_entry(ds: DataSet, heads: int) -> dict:
    """A data set as `volume ls` and the JSON answers show it."""
    a = ds.attributes
    dsorg = "PO-E" if a.pdse else ("HFS" if a.hfs else a.dsorg)
    return {
        "name": a.name,
        "dsorg": dsorg,
        "recfm": a.recfm,
        "lrecl": a.lrecl,
        "blksize": a.blksize,
        "tracks": ds.tracks(heads),
        "extents": [e.describe() for e in ds.extents],
        "where": [[e.cyl, e.head, e.end_cyl, e.end_head] for e in ds.extents],
    }


def dataset_from_entry(entry: dict) -> DataSet:
    """The data set back from its `dataset_entry`: a later lookup reads it without the VTOC (which may
    lie at the far end of a gzip'd volume)."""
    dsorg = entry["dsorg"]
    extents = [dscb.Extent(i, *where) for i, where in enumerate(entry["where"])]
    f1 = dscb.Format1(
        name=entry["name"],
        volser="",
        dsorg="PO" if dsorg == "PO-E" else dsorg,
        recfm=entry["recfm"],
        lrecl=entry["lrecl"],
        blksize=entry["blksize"],
        keylen=0,
        pdse=dsorg == "PO-E",
        hfs=dsorg == "HFS",
        extents=extents[:3],
        extent_count=len(extents),
        last_used=(0, 0),
        next_dscb=None,
    )
    return DataSet(f1, extents)
