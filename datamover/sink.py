"""Writing a volume in which all-zero blocks stay holes: into a sparse file of its own, or (datamover.ext2)
straight into the blocks of a file system image."""

import functools
import os

BLOCK = 4096  # file system block: the granularity of holes
_ZERO_BLOCK = bytes(BLOCK)
WRITEBACK = 32 << 20  # bytes written between two starts of their write-back


@functools.lru_cache(maxsize=8)
def _zeros(length: int) -> bytes:
    return bytes(length)


def pwrite_all(fd: int, view: memoryview, at: int) -> None:
    while view:
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


class WriteBack:
    """Starts the write-back of what a writer wrote, every WRITEBACK bytes (and keeps those pages
    out of the page cache, which the emulator or the next volumes need more), so that the fsync at
    the end waits for the last few MB only."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._low, self._high, self._pending = -1, 0, 0  # byte range written since the last start

    def wrote(self, at: int, length: int) -> None:
        self._low = at if self._low < 0 else min(self._low, at)
        self._high = max(self._high, at + length)
        self._pending += length
        if self._pending >= WRITEBACK:
            os.posix_fadvise(self._fd, self._low, self._high - self._low, os.POSIX_FADV_DONTNEED)
            self._low, self._high, self._pending = -1, 0, 0


class BlockWriter:
    """Sequential writer that skips all-zero blocks; where the other blocks go is the subclass's
    `_pwrite` (block-aligned offsets of the volume), what closing means its `_finish`."""

    def __init__(self) -> None:
        self._pos = 0  # file offset of the next whole block
        self._carry = b""  # bytes short of a whole block, kept for the next write
        self.written = 0  # bytes really written (not holes)

    def write(self, data: bytes) -> None:
        start = 0
        if self._carry:  # complete the pending block with the first bytes of data
            start = BLOCK - len(self._carry)
            block, self._carry = self._carry + data[:start], b""
            if len(block) < BLOCK:
                self._carry = block
                return
            self._write_blocks(block, 0, BLOCK)
        end = len(data) - (len(data) - start) % BLOCK
        self._write_blocks(data, start, end)
        self._carry = data[end:]

    def _write_blocks(self, data: bytes, start: int, end: int) -> None:
        """Write data[start:end] (whole blocks) at the current offset, skipping zero blocks."""
        if data.startswith(_zeros(end - start), start):  # most chunks of a volume are all zeros
            self._pos += end - start
            return
        view = memoryview(data)
        run = -1  # start of the current run of non-zero blocks
        for at in range(start, end, BLOCK):
            if data.startswith(_ZERO_BLOCK, at):
                if run >= 0:
                    self._pwrite(view[run:at], self._pos + run - start)
                    run = -1
            elif run < 0:
                run = at
        if run >= 0:
            self._pwrite(view[run:end], self._pos + run - start)
        self._pos += end - start

    def _pwrite(self, view: memoryview, at: int) -> None:
        raise NotImplementedError

    def _finish(self, sync: bool) -> None:
        raise NotImplementedError

    @property
    def size(self) -> int:
        return self._pos + len(self._carry)

    def close(self, sync: bool = True) -> None:
        """Write the last partial block, then finish (length, durability) as the subclass does."""
        try:
            if self._carry.strip(b"\0"):
                self._pwrite(memoryview(self._carry), self._pos)
            self._pos += len(self._carry)
            self._carry = b""
            self._finish(sync)
        finally:
            self.abort()

    def abort(self) -> None:
        """Release what the writer holds (no-op once closed)."""


class SparseWriter(BlockWriter):
    """A volume file of its own in which all-zero blocks stay holes; the length is set at close."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        # O_TRUNC: a retried volume starts from an empty file, so the holes read back as zeros
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._writeback = WriteBack(self._fd)

    def _pwrite(self, view: memoryview, at: int) -> None:
        pwrite_all(self._fd, view, at)
        self.written += len(view)
        self._writeback.wrote(at, len(view))

    def _finish(self, sync: bool) -> None:
        os.ftruncate(self._fd, self._pos)
        if sync:
            os.fsync(self._fd)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
