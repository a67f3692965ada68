"""Track access to a CKD volume image (Hercules / P/390 "CKD_P370"), plain or gzip'd.

The image is a 512-byte device header (heads per cylinder and track size, little-endian) and then
every track at a fixed size, so track n lies at 512 + n x track size. A plain file is read with
pread; a gzip'd one is inflated forward and only as far as the furthest track asked for, so
memory stays flat and a VTOC near the front costs a small part of the volume. Asking for a track
behind the stream starts it again: callers read in ascending order where they can.

A track image: home address (bin, CC, HH), then records, each a count CCHHRKDD (key length K,
data length DD big-endian) with its key and data, ending with eight X'FF'.
"""

import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple

from datamover.codec import GzipError, gunzip, inflate_module
from datamover.errors import MoverError

DEVICE_HEADER = 512
PLAIN_ID = b"CKD_P370"
HOME_ADDRESS = 5
COUNT = 8
END_OF_TRACK = b"\xff" * COUNT
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 256 << 10  # compressed bytes per read: what a small lookup costs at least
_OUT_CHUNK = 1 << 20
_CACHED_TRACKS = 64  # about 3.6 MB of 3390 tracks: directory and member tracks are read again


class VolumeFormatError(MoverError):
    """The file is not a volume image this reader understands, or it ends early."""


@dataclass(frozen=True)
class TrackRecord:
    """One record of a track: its count fields, key and data, and where its data lies in the track."""

    cyl: int
    head: int
    record: int
    key: bytes
    data: bytes
    data_offset: int  # offset of the data field within the track image


def parse_track(track: bytes, where: str) -> List[TrackRecord]:
    """The records of a track image (R0 included) up to its end-of-track marker."""
    out = []
    pos = HOME_ADDRESS
    while True:
        if pos + COUNT > len(track):
            raise VolumeFormatError(f"{where}: no end-of-track marker")
        count = track[pos : pos + COUNT]
        if count == END_OF_TRACK:
            return out
        cyl, head, record, klen, dlen = struct.unpack(">HHBBH", count)
        key_at = pos + COUNT
        data_at = key_at + klen
        pos = data_at + dlen
        if pos > len(track):
            raise VolumeFormatError(f"{where}: record {record} runs past the end of the track")
        out.append(TrackRecord(cyl, head, record, track[key_at:data_at], track[data_at:pos], data_at))


class _Inflated:
    """Forward reads of a gzip'd file's uncompressed bytes; a read behind the stream restarts it."""

    def __init__(self, path: str, on_read: Optional[Callable[[int], None]] = None) -> None:
        self.path = path
        self.on_read = on_read
        self.compressed_read = 0  # bytes of the file read, over every restart
        self.inflated = 0
        self.restarts = 0
        self._zmod = inflate_module()[1]
        self._file: Optional[BinaryIO] = None
        self._start()

    def _feed(self) -> Iterator[bytes]:
        assert self._file is not None
        while True:
            data = self._file.read(_READ_CHUNK)
            if not data:
                return
            self.compressed_read += len(data)
            if self.on_read is not None:
                self.on_read(self._file.tell())
            yield data

    def _start(self) -> None:
        if self._file is not None:
            self._file.close()
            self.restarts += 1
        self._file = open(self.path, "rb")  # noqa: SIM115 - kept open between reads, closed in close()
        self._chunks = gunzip(self._feed(), self._zmod, _OUT_CHUNK)
        self._buffer = b""
        self._buffer_at = 0  # uncompressed offset of _buffer[0]

    def _next(self) -> bool:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return False
        except GzipError as exc:
            raise VolumeFormatError(f"{self.path}: {exc}") from None
        self._buffer_at += len(self._buffer)
        self._buffer = chunk
        self.inflated += len(chunk)
        return True

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < self._buffer_at:
            self._start()
        parts = []
        want = offset
        end = offset + length
        while want < end:
            buffer_end = self._buffer_at + len(self._buffer)
            if want >= buffer_end:
                if not self._next():
                    break
                continue
            piece = self._buffer[want - self._buffer_at : end - self._buffer_at]
            parts.append(piece)
            want += len(piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class VolumeImage:
    """A CKD volume image opened for reading tracks. Use as a context manager."""

    def __init__(self, path: str, on_read: Optional[Callable[[int], None]] = None) -> None:
        """`on_read(offset)`: called as a gzip'd image is read, with how far into the file (for progress)."""
        self.path = path
        self.file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(2)
        self.gzip = magic == _GZIP_MAGIC
        self._plain: Optional[BinaryIO] = None
        self._inflated: Optional[_Inflated] = None
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self.plain_read = 0
        try:
            if self.gzip:
                self._inflated = _Inflated(path, on_read)
            else:
                self._plain = open(path, "rb")  # noqa: SIM115 - closed in close()
            header = self._read(0, DEVICE_HEADER)
            self.heads, self.track_size = self._check_header(header)
        except BaseException:
            self.close()
            raise

    def _check_header(self, header: bytes) -> Tuple[int, int]:
        what = "gzip'd file" if self.gzip else "file"
        if len(header) < DEVICE_HEADER:
            raise VolumeFormatError(f"{self.path}: {what} of {len(header)} bytes is too short for a CKD volume image")
        ident = header[:8]
        if ident != PLAIN_ID:
            if ident.startswith(b"CKD_"):
                raise VolumeFormatError(
                    f"{self.path}: {ident.decode('ascii', 'replace')} is a compressed CKD "
                    "image (Hercules cckd); only CKD_P370 images can be read"
                )
            raise VolumeFormatError(f"{self.path}: not a CKD volume image (no CKD_P370 device header)")
        heads, track_size = struct.unpack_from("<II", header, 8)
        if not 1 <= heads <= 255 or not 256 <= track_size <= 1 << 20:
            raise VolumeFormatError(f"{self.path}: device header gives {heads} heads and {track_size}-byte tracks")
        return heads, track_size

    def _read(self, offset: int, length: int) -> bytes:
        if self._inflated is not None:
            return self._inflated.read_at(offset, length)
        assert self._plain is not None
        data = os.pread(self._plain.fileno(), length, offset)
        self.plain_read += len(data)
        return data

    def track_number(self, cyl: int, head: int) -> int:
        return cyl * self.heads + head

    def track_offset(self, number: int) -> int:
        return DEVICE_HEADER + number * self.track_size

    def track(self, number: int) -> bytes:
        cached = self._cache.get(number)
        if cached is not None:
            self._cache.move_to_end(number)
            return cached
        data = self._read(self.track_offset(number), self.track_size)
        if len(data) < self.track_size:
            cyl, head = divmod(number, self.heads)
            raise VolumeFormatError(
                f"{self.path}: the volume image ends before cylinder {cyl} head {head} "
                f"(track {number}); the file is truncated"
            )
        self._cache[number] = data
        if len(self._cache) > _CACHED_TRACKS:
            self._cache.popitem(last=False)
        return data

    def records(self, number: int) -> List[TrackRecord]:
        cyl, head = divmod(number, self.heads)
        return parse_track(self.track(number), f"{self.path}: cylinder {cyl} head {head}")

    def record(self, number: int, record: int) -> Optional[TrackRecord]:
        """Record `record` of track `number`, or None when the track has no such record."""
        for rec in self.records(number):
            if rec.record == record:
                return rec
        return None

    def read_bytes(self) -> int:
        """Bytes of the file read so far (compressed bytes for a gzip'd image)."""
        return self._inflated.compressed_read if self._inflated is not None else self.plain_read

    def inflated_bytes(self) -> int:
        """Uncompressed bytes produced so far (over every restart); the bytes read for a plain image."""
        return self._inflated.inflated if self._inflated is not None else self.plain_read

    def close(self) -> None:
        if self._inflated is not None:
            self._inflated.close()
        if self._plain is not None:
            self._plain.close()

    def __enter__(self) -> "VolumeImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
