"""A `RangeSource` over SFTP: the staged volume files on the storage server, read in parts.

Each worker of the transfer manager opens its own reader, hence its own SFTP client (a client
shared between threads corrupts the stream). How a client is made is the caller's business: a
factory returns a context manager yielding an `SFTPClient` (`session_clients` makes one from the
storage endpoint, one SSH connection per worker so that decryption runs in parallel).

paramiko's plain read loop waits for every reply (about 25x slower than OpenSSH). Its `readv`
pipelines, but through a helper thread whose requests can fall behind the replies when threads
compete for the interpreter; paramiko then takes the prefetch as finished and reads the rest one
request at a time (measured: 30-120 MB/s, erratic, with a copy running). So a range is read here
with a window of requests kept in flight from the reading thread itself, on paramiko's
request/response primitives (`_async_request`, `_read_response`, stable across paramiko 2-4);
`readv` remains the fallback should those primitives disappear. Requests ask for 255 KiB, what
OpenSSH's sftp-server answers in one reply (fewer messages, less interpreter work per byte); a
server that answers less is asked for the rest, and later requests use the size it answered.

When the staging directory is on this machine (`storage.transport: local`) the file is read
directly instead.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import paramiko
from paramiko.sftp import CMD_DATA, CMD_READ, int64

from infra import ssh
from infra.transfer import LocalFileSource, RangeSource
from zimage.config import Storage

BLOCK = 32 * 1024  # the largest read every SFTP server answers in full (readv fallback)
MAX_REQUEST = 255 * 1024  # OpenSSH sftp-server's largest reply (SFTP_MAX_READ_LENGTH)
IN_FLIGHT = 4 * 1024 * 1024  # bytes requested and not yet received, per reader
_PIPELINE = hasattr(paramiko.SFTPClient, "_async_request") and hasattr(paramiko.SFTPClient, "_read_response")

ClientFactory = Callable[[], AbstractContextManager[paramiko.SFTPClient]]


class SftpReadError(OSError):
    pass


class _Replies:
    """Receives the replies paramiko routes to the object that sent the requests."""

    def __init__(self) -> None:
        self.arrived: list[tuple[int, int, paramiko.Message]] = []

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        self.arrived.append((num, kind, msg))


class SftpRangeReader:
    """Byte ranges of one remote file through one SFTP client; for one thread."""

    def __init__(self, open_client: ClientFactory, path: str, where: str, request_size: int = MAX_REQUEST):
        self.path = path
        self.where = where
        self.request_size = request_size  # lowered to what the server answers
        self._stack = contextlib.ExitStack()
        try:
            self._sftp = sftp = self._stack.enter_context(open_client())
            self._file: paramiko.SFTPFile = self._stack.enter_context(sftp.open(path, "rb"))
            self.size = int(self._file.stat().st_size or 0)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._stack.close()
            raise SftpReadError(f"{where}: cannot open: {exc}") from exc

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if offset < 0 or end > self.size:
            raise SftpReadError(f"{self.where}: bytes {offset}..{end - 1} are outside the file ({self.size} bytes)")
        try:
            if _PIPELINE:
                data = self._pipelined(offset, end)
            else:
                data = b"".join(self._file.readv([(at, min(BLOCK, end - at)) for at in range(offset, end, BLOCK)]))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SftpReadError(f"{self.where}: reading bytes {offset}..{end - 1}: {exc}") from exc
        if len(data) != length:
            raise SftpReadError(
                f"{self.where}: got {len(data)} bytes at offset {offset}, expected {length} (file changed?)"
            )
        return data

    def _pipelined(self, offset: int, end: int) -> bytes:
        sftp = self._sftp
        replies = _Replies()
        asked: dict[int, tuple[int, int]] = {}  # request number -> (offset, length)
        pieces: dict[int, bytes] = {}
        at = offset
        missing = end - offset

        def ask(start: int, length: int) -> None:
            num = sftp._async_request(replies, CMD_READ, self._file.handle, int64(start), int(length))
            asked[num] = (start, length)

        while missing:
            while at < end and len(asked) * self.request_size < IN_FLIGHT:
                length = min(self.request_size, end - at)
                ask(at, length)
                at += length
            sftp._read_response()  # one reply, handed to replies._async_response
            for num, kind, msg in replies.arrived:
                start, length = asked.pop(num)
                if kind != CMD_DATA:
                    sftp._convert_status(msg)  # raises the server's error (EOF, permission, ...)
                    raise SftpReadError(f"unexpected reply type {kind} at offset {start}")
                data = msg.get_binary()
                if not data:
                    raise SftpReadError(f"no data at offset {start}")
                pieces[start] = data
                missing -= len(data)
                if len(data) < length:  # servers may answer short: ask for the rest, and less from now on
                    ask(start + len(data), length - len(data))
                    self.request_size = max(4096, min(self.request_size, len(data)))
            replies.arrived.clear()
        return b"".join(pieces[k] for k in sorted(pieces))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SftpRangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SftpSource:
    """A remote file; `open()` gives each worker its own client and file handle."""

    def __init__(self, open_client: ClientFactory, path: str, host: str = "storage"):
        if not posixpath.isabs(path):
            raise ValueError(f"remote path {path!r} must be absolute")
        self.open_client = open_client
        self.path = path
        self.name = f"sftp://{host}{path}"
        self._size: int | None = None
        self._spare: SftpRangeReader | None = None  # the reader that learnt the size, for the first open()
        self._lock = threading.Lock()

    def size(self) -> int:
        with self._lock:
            if self._size is None:
                self._spare = SftpRangeReader(self.open_client, self.path, self.name)
                self._size = self._spare.size
            return self._size

    def open(self) -> SftpRangeReader:
        with self._lock:
            spare, self._spare = self._spare, None
        return spare or SftpRangeReader(self.open_client, self.path, self.name)

    def close(self) -> None:
        """Close the reader kept from size() if no worker took it."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()


def session_clients(storage: Storage, timeouts: ssh.Timeouts | None = None) -> ClientFactory:
    """A client factory on the storage endpoint: each client on its own verified SSH connection."""

    @contextlib.contextmanager
    def client() -> Iterator[paramiko.SFTPClient]:
        with ssh.connect(storage, timeouts or ssh.Timeouts()) as session:
            sftp = session.open_sftp()
            try:
                yield sftp
            finally:
                sftp.close()

    return client


def staged_path(storage: Storage, path: str) -> str:
    """A path on the storage server, checked to lie under the staging root."""
    normal = posixpath.normpath(path)
    root = storage.root.rstrip("/") + "/"
    if not posixpath.isabs(path) or not normal.startswith(root):
        raise ValueError(f"{path!r} is not under the staging root {storage.root}")
    return normal


def open_source(storage: Storage, path: str, open_client: ClientFactory | None = None) -> RangeSource:
    """The staged file at `path` (absolute, under storage.root) as a range source: read directly
    when the staging directory is on this machine, else over SFTP."""
    remote = staged_path(storage, path)
    if storage.transport == "local":
        return LocalFileSource(Path(remote))
    return SftpSource(open_client or session_clients(storage), remote, f"{storage.host}:{storage.port}")
