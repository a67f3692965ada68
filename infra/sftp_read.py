"""Fast, in-order streaming reads of one remote file over SFTP.

paramiko's plain `read` loop waits for each 32 KiB reply before asking for the next (about 25x
slower than OpenSSH's sftp on loopback). Here the file is cut into segments; worker threads, each
with its own SFTP client (a client shared between threads corrupts the stream), fetch a segment
with `readv` (all its read requests in flight at once) while the consumer takes finished
segments in order. At most `ahead` segments are buffered, so memory stays flat in the file size.

What bounds it is Python, not the network: every reply passes through paramiko's transport
thread (socket, decrypt, MAC, channel buffer) and then the SFTP layer, all under one GIL. Requests
of 128 KiB instead of paramiko's 32 KiB make 4x fewer messages; a second connection lets one
transport decrypt while the other parses; more streams only add contention on 2 cores.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import paramiko

# Read requests of 128 KiB (paramiko's own limit is 32 KiB) cut the per-message work by 4 and
# measured about 1.35x faster over loopback. OpenSSH serves reads up to 255 KiB; a server that
# answers less is still read correctly (paramiko fetches the rest), only more slowly.
BLOCK = 128 * 1024
SEGMENT = 8 * 1024 * 1024  # larger segments drain each worker's pipeline less often
STREAMS = 2  # on 2 cores more streams only add GIL contention (bench/sftp_read.py)

ClientFactory = Callable[[], AbstractContextManager[paramiko.SFTPClient]]


class SftpReadError(OSError):
    pass


class ParallelReader(io.RawIOBase):
    """Bytes [offset, offset+length) of a remote file, read by `streams` SFTP clients in parallel.

    Iterate `chunks()` for segments in order, or use it as a readable binary file.
    """

    def __init__(
        self,
        open_client: ClientFactory,
        path: str,
        size: int,
        *,
        offset: int = 0,
        length: int | None = None,
        streams: int = STREAMS,
        segment: int = SEGMENT,
        block: int = BLOCK,
        ahead: int | None = None,
    ):
        super().__init__()
        if offset < 0 or offset > size:
            raise ValueError(f"offset {offset} is outside {path} ({size} bytes)")
        self.path = path
        self.start = offset
        self.length = size - offset if length is None else min(length, size - offset)
        self._segment = segment
        self._block = block
        self._count = -(-self.length // segment)
        self._ahead = max(ahead or streams + 1, streams)
        self._open_client = open_client
        self._cond = threading.Condition()
        self._next = 0  # next segment a worker takes
        self._taken = 0  # segments the consumer has taken
        self._done: dict[int, bytes] = {}
        self._error: BaseException | None = None
        self._stop = False
        self._buffer = memoryview(b"")
        self._chunks: Iterator[bytes] | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"sftp-read-{i}", daemon=True)
            for i in range(min(streams, self._count) or 1)
        ]
        for thread in self._threads:
            thread.start()

    # --- workers -----------------------------------------------------------------------------

    def _claim(self) -> int | None:
        with self._cond:
            while not self._stop and self._next < self._count and self._next - self._taken >= self._ahead:
                self._cond.wait()
            if self._stop or self._next >= self._count:
                return None
            self._next += 1
            return self._next - 1

    def _work(self) -> None:
        try:
            with self._open_client() as sftp, sftp.open(self.path, "rb") as remote:
                remote.MAX_REQUEST_SIZE = self._block  # readv splits requests at this size
                while (index := self._claim()) is not None:
                    data = self._fetch(remote, index)
                    with self._cond:
                        self._done[index] = data
                        self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer, which raises it
            with self._cond:
                self._error = self._error or exc
                self._cond.notify_all()

    def _fetch(self, remote: paramiko.SFTPFile, index: int) -> bytes:
        begin = self.start + index * self._segment
        end = min(begin + self._segment, self.start + self.length)
        blocks = [(at, min(self._block, end - at)) for at in range(begin, end, self._block)]
        data = b"".join(remote.readv(blocks))
        if len(data) != end - begin:
            raise SftpReadError(
                f"{self.path}: got {len(data)} bytes at offset {begin}, expected {end - begin} (file changed?)"
            )
        return data

    # --- consumer ----------------------------------------------------------------------------

    def chunks(self) -> Iterator[bytes]:
        """The segments in order; raises SftpReadError when a worker failed."""
        for index in range(self._count):
            with self._cond:
                while index not in self._done and self._error is None and not self._stop:
                    self._cond.wait()
                if self._error is not None:
                    raise SftpReadError(f"reading {self.path}: {self._error}") from self._error
                if self._stop:
                    raise SftpReadError(f"reading {self.path}: the reader was closed")
                data = self._done.pop(index)
                self._taken = index + 1
                self._cond.notify_all()
            yield data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._buffer:
            if self._chunks is None:
                self._chunks = self.chunks()
            self._buffer = memoryview(next(self._chunks, b""))
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            # A worker stuck on a dead connection ends at the channel's read timeout.
            thread.join(timeout=5)
        self._done.clear()
        super().close()
