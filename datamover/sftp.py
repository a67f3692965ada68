"""Reading files from an SFTP server through the system's OpenSSH client, standard library only.

The OpenSSH `ssh` client carries the connection (host key checked against a known_hosts file, key
authentication only); this module speaks SFTP version 3 over its stdin/stdout: open, stat, read
with many requests in flight (the server answers them in order), close. Used on an emulator host to
pull volumes straight from the storage server, so no Python of the orchestrator is in the byte path.
"""

import os
import struct
import subprocess
import threading
from collections import deque
from typing import Optional

from datamover.errors import MoverError

_INIT, _VERSION, _OPEN, _CLOSE, _READ, _STAT = 1, 2, 3, 4, 5, 17
_STATUS, _HANDLE, _DATA, _ATTRS = 101, 102, 103, 105
_EOF = 1
_READ_FLAG = 0x01
_SIZE_FLAG = 0x01
REQUEST = 255 << 10  # bytes asked per read: OpenSSH's sftp-server answers up to 255 KiB (fewer messages
# to parse here); a server that answers less teaches its own size (see SftpReader._take)
IN_FLIGHT = 16  # requests outstanding: 4 MiB on the wire keeps a fast link busy


class SftpError(MoverError):
    pass


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class SftpConnection:
    """One SFTP session over one `ssh` process. Not shared between threads."""

    def __init__(self, argv: list[str], where: str) -> None:
        self.where = where
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        self._stderr: list[bytes] = []
        self._drain = threading.Thread(target=self._read_stderr, name="ssh-stderr", daemon=True)
        self._drain.start()
        self._in = os.fdopen(self._proc.stdout.fileno(), "rb", buffering=1 << 20, closefd=False)  # type: ignore[union-attr]
        self._next_id = 1
        try:
            self._send(_INIT, struct.pack(">I", 3))
            kind, _ = self._receive()
        except SftpError:
            self.close()
            raise
        if kind != _VERSION:
            self.close()
            raise SftpError(f"{where}: the server did not answer the SFTP version request")

    def _read_stderr(self) -> None:
        for line in self._proc.stderr:  # type: ignore[union-attr]
            self._stderr = [*self._stderr, line][-10:]

    def _failure(self, what: str) -> SftpError:
        self._proc.poll()
        self._drain.join(timeout=2)
        detail = b" | ".join(x.strip() for x in self._stderr).decode("utf-8", "replace")
        status = self._proc.returncode
        return SftpError(
            f"{self.where}: {what}"
            + (f" (ssh exit status {status})" if status is not None else "")
            + (f": {detail}" if detail else "")
        )

    def _send(self, kind: int, payload: bytes) -> None:
        try:
            self._proc.stdin.write(struct.pack(">IB", len(payload) + 1, kind) + payload)  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            raise self._failure("connection lost") from None

    def _exact(self, count: int) -> bytes:
        data = self._in.read(count)
        if data is None or len(data) != count:
            raise self._failure("connection closed")
        return data

    def _receive(self) -> tuple[int, bytes]:
        length, kind = struct.unpack(">IB", self._exact(5))
        return kind, self._exact(length - 1)

    def _request(self, kind: int, payload: bytes) -> int:
        rid = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        self._send(kind, struct.pack(">I", rid) + payload)
        return rid

    def _reply_head(self, rid: int, what: str) -> tuple[int, int]:
        """The kind of the next reply and how many of its bytes follow its request id."""
        length, kind, got = struct.unpack(">IBI", self._exact(9))
        if got != rid:
            raise SftpError(f"{self.where}: {what}: reply {got} to request {rid}")
        return kind, length - 5

    def _reply(self, rid: int, what: str) -> tuple[int, bytes]:
        kind, rest = self._reply_head(rid, what)
        return kind, self._exact(rest)

    def _status(self, body: bytes, what: str) -> SftpError:
        code, length = struct.unpack_from(">II", body)
        message = body[8 : 8 + length].decode("utf-8", "replace")
        return SftpError(f"{self.where}: {what}: {message or f'status {code}'}")

    def size(self, path: str) -> int:
        kind, body = self._reply(self._request(_STAT, _string(path.encode())), f"stat {path}")
        if kind != _ATTRS:
            raise self._status(body, f"stat {path}")
        (flags,) = struct.unpack_from(">I", body)
        if not flags & _SIZE_FLAG:
            raise SftpError(f"{self.where}: stat {path}: the server gave no size")
        return struct.unpack_from(">Q", body, 4)[0]

    def open(self, path: str) -> "SftpReader":
        payload = _string(path.encode()) + struct.pack(">II", _READ_FLAG, 0)
        kind, body = self._reply(self._request(_OPEN, payload), f"open {path}")
        if kind != _HANDLE:
            raise self._status(body, f"open {path}")
        (length,) = struct.unpack_from(">I", body)
        return SftpReader(self, path, body[4 : 4 + length])

    def close(self) -> None:
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class SftpReader:
    """Sequential reads of one remote file with IN_FLIGHT requests outstanding; each read returns
    what one reply holds (or `size` of it), so the bytes are not copied again to fill a size."""

    def __init__(self, conn: SftpConnection, path: str, handle: bytes) -> None:
        self._conn = conn
        self._path = path
        self._handle = handle
        self._pending: deque[tuple[int, int]] = deque()  # (request id, offset), in order
        self._next = 0  # offset of the next request to send
        self._ask = REQUEST
        self._chunks: deque[bytes] = deque()  # read, not yet returned
        self._eof = False
        self._closed = False

    def _fill(self) -> None:
        while not self._eof and len(self._pending) < IN_FLIGHT:
            payload = _string(self._handle) + struct.pack(">QI", self._next, self._ask)
            self._pending.append((self._conn._request(_READ, payload), self._next))
            self._next += self._ask

    def _take(self) -> Optional[bytes]:
        rid, offset = self._pending.popleft()
        what = f"read {self._path}"
        kind, rest = self._conn._reply_head(rid, what)
        if kind == _DATA:  # the data read straight from the stream: one copy, no slicing
            (length,) = struct.unpack(">I", self._conn._exact(4))
            if length != rest - 4:
                raise SftpError(f"{self._conn.where}: {what}: a data reply of {rest} bytes says {length}")
            data = self._conn._exact(length)
        elif kind == _STATUS:
            body = self._conn._exact(rest)
            (code,) = struct.unpack_from(">I", body)
            if code == _EOF:
                return None
            raise self._conn._status(body, f"read {self._path} at {offset}")
        else:
            raise SftpError(f"{self._conn.where}: {what}: unexpected reply type {kind}")
        if length < self._ask:
            # short read (the server's limit, or the end of the file): what was asked beyond it is
            # asked again from where it ended, in pieces the server answers whole
            self._discard()
            self._next = offset + length
            self._ask = max(4096, length & ~4095)
        return data

    def _discard(self) -> None:
        while self._pending:
            rid, _ = self._pending.popleft()
            self._conn._reply(rid, f"read {self._path}")

    def read(self, size: int) -> bytes:
        """The next bytes of the file, at most `size` (fewer when a reply holds fewer); b"" at its end."""
        while not self._chunks and not self._eof:
            self._fill()
            data = self._take()
            if data is None:
                self._eof = True
                self._discard()
            elif data:
                self._chunks.append(data)
        if not self._chunks:
            return b""
        chunk = self._chunks.popleft()
        if len(chunk) > size:
            self._chunks.appendleft(chunk[size:])
            chunk = chunk[:size]
        return chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._discard()
        kind, _ = self._conn._reply(self._conn._request(_CLOSE, _string(self._handle)), f"close {self._path}")
        if kind != _STATUS:
            raise SftpError(f"{self._conn.where}: close {self._path}: unexpected reply type {kind}")
