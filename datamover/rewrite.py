"""In-place rewrite of a PDS member on a plain volume image: every record keeps its length.

    rewrite_member(path, dsn, member, records) -> (sha256 before, sha256 after)
    member_jobs(value, where) -> [MemberJob]       the orchestrator's list, checked before any write
    apply_jobs(path, volser, jobs) -> new sha256 of the volume, or None when no job names it

The member's blocks stay where they are and only their bytes change, so nothing else of the
volume moves: the new records must be as many as the old and each exactly LRECL long (fixed
format, F or FB); anything else is refused before a byte is written. The member is read back and
compared; a mismatch puts the old bytes back and fails.
"""

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from datamover import pds
from datamover.dataset import find
from datamover.errors import MoverError
from datamover.names import check_volser
from datamover.progress import log
from datamover.volume import VolumeImage
from datamover.vtoc import read_vtoc

_HASH_CHUNK = 4 << 20


class RewriteRefused(MoverError):
    """The new records cannot replace the old ones in place; nothing was written."""


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_HASH_CHUNK)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)


def _new_blocks(where: str, lrecl: int, blocks: List[pds.Block], old: List[bytes], new: List[bytes]) -> List[bytes]:
    if len(new) != len(old):
        raise RewriteRefused(
            f"{where}: {len(new)} new record(s) for {len(old)}; an in-place rewrite keeps the number of records"
        )
    for index, record in enumerate(new):
        if len(record) != lrecl:
            raise RewriteRefused(
                f"{where}: new record {index + 1} is {len(record)} bytes; every record must stay {lrecl} bytes (LRECL)"
            )
    out, at = [], 0
    for block in blocks:
        count = len(block.data) // lrecl
        out.append(b"".join(new[at : at + count]))
        at += count
    return out


def _write(path: str, writes: List[Tuple[int, bytes]]) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset, data in writes:
            if os.pwrite(fd, data, offset) != len(data):
                raise MoverError(f"{path}: short write at offset {offset}")
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite_member(path: str, dsn: str, member: str, records: List[bytes]) -> Tuple[str, str]:
    dsn, member = pds.dataset_name(dsn), pds.member_name(member)
    where = f"{path}: {dsn}({member})"
    with VolumeImage(path) as volume:
        if volume.gzip:
            raise RewriteRefused(
                f"{where}: the volume image is gzip'd; members are rewritten only in a plain (decompressed) image"
            )
        ds = find(volume, read_vtoc(volume), dsn)
        a = ds.attributes
        if not a.recfm.startswith("F") or not a.lrecl:
            raise RewriteRefused(
                f"{where}: RECFM {a.recfm or 'not set'}; only fixed-length records (F, FB) are rewritten in place"
            )
        blocks = pds.member_blocks(volume, ds, member)
        old = pds.deblock(ds, blocks)
        offsets = [volume.track_offset(b.track) + b.offset for b in blocks]
    new_blocks = _new_blocks(where, a.lrecl, blocks, old, [bytes(r) for r in records])
    before = file_sha256(path)
    changed = [i for i in range(len(blocks)) if blocks[i].data != new_blocks[i]]
    _write(path, [(offsets[i], new_blocks[i]) for i in changed])
    with VolumeImage(path) as volume:
        back = pds.deblock(ds, pds.member_blocks(volume, find(volume, read_vtoc(volume), dsn), member))
    if back != [bytes(r) for r in records]:
        _write(path, [(offsets[i], blocks[i].data) for i in changed])
        raise MoverError(f"{where}: the member read back differs from what was written; the old bytes were put back")
    return before, file_sha256(path)


@dataclass(frozen=True)
class MemberJob:
    """New records for one member of one volume, as the orchestrator computed them."""

    volser: str
    dsn: str
    member: str
    records: Tuple[bytes, ...]

    @property
    def label(self) -> str:
        return f"{self.volser}:{self.dsn}({self.member})"


def member_jobs(value: Any, where: str) -> List[MemberJob]:
    """[{"volser", "dsn", "member", "records": [base64, ...]}, ...] checked whole: names, records."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise MoverError(f"{where}: expected a list")
    jobs = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict) or set(item) != {"volser", "dsn", "member", "records"}:
            raise MoverError(f"{at}: expected an object with exactly volser, dsn, member and records")
        if not isinstance(item["dsn"], str) or not isinstance(item["member"], str):
            raise MoverError(f"{at}: dsn and member must be strings")
        records = item["records"]
        if not isinstance(records, list) or not records or not all(isinstance(r, str) for r in records):
            raise MoverError(f"{at}.records: expected a non-empty list of base64 strings")
        try:
            decoded = tuple(base64.b64decode(r, validate=True) for r in records)
        except binascii.Error as exc:
            raise MoverError(f"{at}.records: not base64 ({exc})") from None
        try:
            dsn, member = pds.dataset_name(item["dsn"]), pds.member_name(item["member"])
        except MoverError as exc:
            raise MoverError(f"{at}: {exc}") from None
        jobs.append(MemberJob(check_volser(item["volser"], f"{at}.volser"), dsn, member, decoded))
    return jobs


def apply_jobs(path: str, volser: str, jobs: Sequence[MemberJob]) -> Optional[str]:
    """The jobs that name this volume, in order, on its plain image at path; the volume's new sha256."""
    digest = None
    for job in jobs:
        if job.volser == volser:
            _, digest = rewrite_member(path, job.dsn, job.member, list(job.records))
            log(f"volume {volser}: {job.dsn}({job.member}) rewritten in place ({len(job.records)} records)")
    return digest
