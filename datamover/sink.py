"""Writing a volume file in which all-zero blocks stay holes (sparse files)."""

import functools
import os

BLOCK = 4096  # file system block: the granularity of holes
_ZERO_BLOCK = bytes(BLOCK)


@functools.lru_cache(maxsize=8)
def _zeros(length: int) -> bytes:
    return bytes(length)


class SparseWriter:
    """Sequential writer that skips all-zero blocks and sets the length at close."""

    def __init__(self, path: str) -> None:
        self.path = path
        # O_TRUNC: a retried volume starts from an empty file, so the holes read back as zeros
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._pos = 0
        self._carry = b""  # bytes short of a whole block, kept for the next write
        self.written = 0  # bytes really written (not holes)

    def write(self, data: bytes) -> None:
        if self._carry:
            data = self._carry + data
        usable = len(data) - len(data) % BLOCK
        self._carry = data[usable:]
        self._write_blocks(data, usable)

    def _write_blocks(self, data: bytes, end: int) -> None:
        if data.startswith(_zeros(end)):  # fast path: most chunks of a volume are all zeros
            self._pos += end
            return
        view = memoryview(data)
        run = -1  # start of the current run of non-zero blocks
        for at in range(0, end, BLOCK):
            if data.startswith(_ZERO_BLOCK, at):
                if run >= 0:
                    self._pwrite(view[run:at], run)
                    run = -1
            elif run < 0:
                run = at
        if run >= 0:
            self._pwrite(view[run:end], run)
        self._pos += end

    def _pwrite(self, view: memoryview, offset: int) -> None:
        at = self._pos + offset
        while view:
            done = os.pwrite(self._fd, view, at)
            view, at = view[done:], at + done
            self.written += done

    @property
    def size(self) -> int:
        return self._pos + len(self._carry)

    def close(self, sync: bool = True) -> None:
        """Write the last partial block, set the file length, optionally make it durable."""
        try:
            if self._carry.strip(b"\0"):
                self._pwrite(memoryview(self._carry), 0)
            self._pos += len(self._carry)
            self._carry = b""
            os.ftruncate(self._fd, self._pos)
            if sync:
                os.fsync(self._fd)
        finally:
            self.abort()

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
