"""A `RangeSource` over SFTP: the staged volume files on the storage server, read in parts.

Each worker of the transfer manager opens its own reader, hence its own SFTP client (a client
shared between threads corrupts the stream). How a client is made is the caller's business: a
factory returns a context manager yielding an `SFTPClient` (`session_clients` makes one from the
storage endpoint, one SSH connection per worker so that decryption runs in parallel). A range is
read with `readv` — all its 32 KiB requests in flight at once — because paramiko's plain read loop
waits for every reply and is about 25x slower than OpenSSH.

When the staging directory is on this machine (`storage.transport: local`) the file is read
directly instead.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import paramiko

from infra import ssh
from infra.transfer import LocalFileSource, RangeSource
from zimage.config import Storage

BLOCK = 32 * 1024  # the largest read every SFTP server answers in full

ClientFactory = Callable[[], AbstractContextManager[paramiko.SFTPClient]]


class SftpReadError(OSError):
    pass


class SftpRangeReader:
    """Byte ranges of one remote file through one SFTP client; for one thread."""

    def __init__(self, open_client: ClientFactory, path: str, where: str):
        self.path = path
        self.where = where
        self._stack = contextlib.ExitStack()
        try:
            sftp = self._stack.enter_context(open_client())
            self._file: paramiko.SFTPFile = self._stack.enter_context(sftp.open(path, "rb"))
            self.size = int(self._file.stat().st_size or 0)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._stack.close()
            raise SftpReadError(f"{where}: cannot open: {exc}") from exc

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if offset < 0 or end > self.size:
            raise SftpReadError(f"{self.where}: bytes {offset}..{end - 1} are outside the file ({self.size} bytes)")
        blocks = [(at, min(BLOCK, end - at)) for at in range(offset, end, BLOCK)]
        try:
            data = b"".join(self._file.readv(blocks))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SftpReadError(f"{self.where}: reading bytes {offset}..{end - 1}: {exc}") from exc
        if len(data) != length:
            raise SftpReadError(
                f"{self.where}: got {len(data)} bytes at offset {offset}, expected {length} (file changed?)"
            )
        return data

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

    def size(self) -> int:
        if self._size is None:
            with self.open() as reader:
                self._size = reader.size
        return self._size

    def open(self) -> SftpRangeReader:
        return SftpRangeReader(self.open_client, self.path, self.name)


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
