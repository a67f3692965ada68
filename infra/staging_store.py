"""The storage server's staging directory: one interface, two implementations.

`SftpStagingStore` works over SSH/SFTP (digests and free space are computed on the storage host
itself, nothing is downloaded); `LocalStagingStore` works on a directory of this machine (demo,
tests). Every path is checked to lie under the configured root. `open_store(storage)` picks one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import shlex
import stat as statmod
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import paramiko
from pydantic import ValidationError

from infra import ssh
from infra.sftp_read import STREAMS, ParallelReader
from zimage import staging
from zimage.config import Component, Storage
from zimage.manifests import ComponentManifest

SMALL_FILE_LIMIT = 16 << 20
HASH_TIMEOUT = 6 * 3600.0  # sha256 of a large volume on a slow disk
_SHA256_HEX = frozenset("0123456789abcdef")


class StagingError(RuntimeError):
    retryable = False


class OutsideRoot(StagingError):
    pass


class VerificationFailed(StagingError):
    retryable = True  # a fresh extraction may well give a good copy


@dataclass(frozen=True)
class FileInfo:
    size: int
    mtime: float
    is_dir: bool


class StagingStore(ABC):
    """Files under `root` on the storage server."""

    def __init__(self, root: str):
        self.root = posixpath.normpath(root)

    def inside(self, path: str) -> str:
        """`path` normalised; OutsideRoot unless it is the root or below it."""
        norm = posixpath.normpath(path if path.startswith("/") else posixpath.join(self.root, path))
        if norm != self.root and not norm.startswith(self.root.rstrip("/") + "/"):
            raise OutsideRoot(f"{path!r} is outside the staging root {self.root}")
        return norm

    @abstractmethod
    def where(self) -> str:
        """Where the store is, for messages."""

    @abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Names in a directory; [] when it does not exist."""

    @abstractmethod
    def stat(self, path: str) -> FileInfo | None:
        """None when the path does not exist."""

    @abstractmethod
    def sha256(self, path: str) -> str:
        """Hex sha256 of a file, computed where the file lies."""

    @abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Rename within the store, replacing `target` when it exists."""

    @abstractmethod
    def delete(self, path: str) -> bool:
        """Remove a file; False when it did not exist."""

    @abstractmethod
    def makedirs(self, path: str) -> None: ...

    @abstractmethod
    def read_bytes(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
        """A small file's content (manifests); StagingError when larger than `limit`."""

    @abstractmethod
    def _write_new(self, path: str, data: bytes) -> None:
        """Write a file that nobody reads yet (a temporary name)."""

    @abstractmethod
    def free_bytes(self, path: str) -> int:
        """Space available to the staging user in the file system holding `path`."""

    @abstractmethod
    def open_read(self, path: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A streaming reader of a file (or a range of it); close it when done."""

    def close(self) -> None:  # noqa: B027 - only remote stores hold something to close
        pass

    def __enter__(self) -> StagingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- built on the primitives -------------------------------------------------------------

    def write_atomic(self, path: str, data: bytes) -> None:
        """Readers see the old content or the new one, never a part."""
        path = self.inside(path)
        temp = f"{path}.{uuid.uuid4().hex[:8]}.part"
        try:
            self._write_new(temp, data)
            self.rename(temp, path)
        except BaseException:
            # The write's error is the one to report; a failed clean-up (connection gone) must not hide it.
            with contextlib.suppress(Exception):
                self.delete(temp)
            raise

    def write_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Write a new file from a stream of blocks, never held whole; returns the bytes written.
        The caller writes under a temporary name and renames once the file is verified."""
        return self._stream_new(self.inside(path), chunks)

    def _stream_new(self, path: str, chunks: Iterable[bytes]) -> int:
        raise NotImplementedError(f"{type(self).__name__} cannot write a stream")

    def check_writable(self, directory: str) -> None:
        """Create the directory if needed and prove a file can be written and removed there."""
        directory = self.inside(directory)
        probe = posixpath.join(directory, f".zimage-probe-{uuid.uuid4().hex[:8]}")
        try:
            self.makedirs(directory)
            self._write_new(probe, b"probe\n")
        except (OSError, StagingError) as exc:
            raise StagingError(f"staging directory {directory} on {self.where()} is not writable: {exc}") from None
        self.delete(probe)


class LocalStagingStore(StagingStore):
    def where(self) -> str:
        return "this machine"

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.inside(path)))
        except FileNotFoundError:
            return []

    def stat(self, path: str) -> FileInfo | None:
        try:
            st = os.stat(self.inside(path))
        except FileNotFoundError:
            return None
        return FileInfo(st.st_size, st.st_mtime, statmod.S_ISDIR(st.st_mode))

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with open(self.inside(path), "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def rename(self, source: str, target: str) -> None:
        os.replace(self.inside(source), self.inside(target))

    def delete(self, path: str) -> bool:
        try:
            os.unlink(self.inside(path))
            return True
        except FileNotFoundError:
            return False

    def makedirs(self, path: str) -> None:
        os.makedirs(self.inside(path), exist_ok=True)

    def read_bytes(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
        with open(self.inside(path), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StagingError(f"{path} is larger than {limit} bytes; not a manifest")
        return data

    def _write_new(self, path: str, data: bytes) -> None:
        with open(self.inside(path), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _stream_new(self, path: str, chunks: Iterable[bytes]) -> int:
        written = 0
        with open(path, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                written += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        return written

    def free_bytes(self, path: str) -> int:
        st = os.statvfs(self.inside(path))
        return st.f_bavail * st.f_frsize

    def open_read(self, path: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        f = open(self.inside(path), "rb")  # noqa: SIM115 - handed to the caller
        if offset:
            f.seek(offset)
        if length is None:
            return f
        return _Window(f, length)  # type: ignore[return-value]


class _Window(io.RawIOBase):
    """The first `length` bytes of a file object."""

    def __init__(self, f: BinaryIO, length: int):
        super().__init__()
        self._f = f
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        count = self._f.readinto(view)  # type: ignore[attr-defined]
        self._left -= count
        return count

    def close(self) -> None:
        self._f.close()
        super().close()


class SftpStagingStore(StagingStore):
    """The staging directory on the storage server, over one SSH connection.

    The connection's one SFTP client is used under a lock, so a store may be shared by threads;
    streaming reads open their own clients.
    """

    def __init__(self, storage: Storage, timeouts: ssh.Timeouts = ssh.Timeouts(), *, read_streams: int = STREAMS):
        super().__init__(storage.root)
        self.storage = storage
        self.timeouts = timeouts
        self.read_streams = read_streams
        self._session = ssh.connect(storage, timeouts)
        self._lock = threading.Lock()
        try:
            self._sftp = self._session.open_sftp()
        except BaseException:
            self._session.close()
            raise

    def where(self) -> str:
        return ssh.where(self.storage)

    @contextmanager
    def _client(self) -> Iterator[paramiko.SFTPClient]:
        with self._lock:
            try:
                yield self._sftp
            except (EOFError, paramiko.SSHException) as exc:
                raise ssh.ConnectionLost(f"SFTP to {self.where()} failed: {exc}") from None

    def _run(self, argv: list[str], timeout: float) -> str:
        command = " ".join(shlex.quote(a) for a in argv)
        result = self._session.run(command, timeout)
        if result.status != 0:
            raise StagingError(
                f"{argv[0]} on {self.where()} failed (exit status {result.status}): {result.stderr_text}"
            )
        return result.stdout.decode("utf-8", "replace")

    def listdir(self, path: str) -> list[str]:
        with self._client() as sftp:
            try:
                return sorted(sftp.listdir(self.inside(path)))
            except FileNotFoundError:
                return []

    def stat(self, path: str) -> FileInfo | None:
        with self._client() as sftp:
            try:
                st = sftp.stat(self.inside(path))
            except FileNotFoundError:
                return None
        return FileInfo(st.st_size or 0, float(st.st_mtime or 0), statmod.S_ISDIR(st.st_mode or 0))

    def sha256(self, path: str) -> str:
        out = self._run(["sha256sum", "--", self.inside(path)], HASH_TIMEOUT)
        digest = out.split(" ", 1)[0].strip()
        if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            raise StagingError(f"sha256sum on {self.where()} printed {out[:200]!r}, expected a digest")
        return digest

    def rename(self, source: str, target: str) -> None:
        with self._client() as sftp:
            sftp.posix_rename(self.inside(source), self.inside(target))

    def delete(self, path: str) -> bool:
        with self._client() as sftp:
            try:
                sftp.remove(self.inside(path))
                return True
            except FileNotFoundError:
                return False

    def makedirs(self, path: str) -> None:
        target = self.inside(path)
        with self._client() as sftp:
            missing: list[str] = []
            current = target
            while current != "/":
                try:
                    sftp.stat(current)
                    break
                except FileNotFoundError:
                    missing.append(current)
                    current = posixpath.dirname(current)
            for directory in reversed(missing):
                sftp.mkdir(directory)

    def read_bytes(self, path: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
        with self._client() as sftp, sftp.open(self.inside(path), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StagingError(f"{path} is larger than {limit} bytes; not a manifest")
        return data

    def _write_new(self, path: str, data: bytes) -> None:
        with self._client() as sftp, sftp.open(self.inside(path), "wb") as f:
            f.set_pipelined(True)
            f.write(data)

    def _stream_new(self, path: str, chunks: Iterable[bytes]) -> int:
        written = 0
        # its own connection: the shared client must not be held for the length of a volume
        with self._own_connection() as sftp, sftp.open(path, "wb") as f:
            f.set_pipelined(True)
            for chunk in chunks:
                f.write(chunk)
                written += len(chunk)
        return written

    def free_bytes(self, path: str) -> int:
        out = self._run(["df", "-Pk", "--", self.inside(path)], 60)
        lines = out.strip().splitlines()
        try:
            return int(lines[-1].split()[3]) * 1024
        except (IndexError, ValueError):
            raise StagingError(f"df -Pk on {self.where()} printed {out[:200]!r}; cannot tell the free space") from None

    def open_read(self, path: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        info = self.stat(path)
        if info is None:
            raise FileNotFoundError(errno.ENOENT, f"not on {self.where()}", path)
        return ParallelReader(  # type: ignore[return-value]
            self._own_connection, self.inside(path), info.size,
            offset=offset, length=length, streams=self.read_streams,
        )

    @contextmanager
    def _own_connection(self) -> Iterator[paramiko.SFTPClient]:
        # A connection per reading thread: each gets its own transport thread and window.
        with ssh.connect(self.storage, self.timeouts) as session:
            sftp = session.open_sftp()
            try:
                yield sftp
            finally:
                sftp.close()

    def close(self) -> None:
        try:
            self._sftp.close()
        finally:
            self._session.close()


def open_store(storage: Storage, timeouts: ssh.Timeouts = ssh.Timeouts()) -> StagingStore:
    """The staging directory as the config describes it; the remote one connects now."""
    if storage.transport == "local":
        return LocalStagingStore(storage.root)
    return SftpStagingStore(storage, timeouts)



# --- the staging area's contents ---------------------------------------------------------------

RECORD_SUFFIX = ".verified"  # beside a volume file: its facts, once verified (until the manifest holds them)


def verify_file(store: StagingStore, path: str, size: int, sha256: str) -> None:
    """The file's size and sha256, computed on the storage server, must be what the extraction
    reported; a file that differs is removed."""
    info = store.stat(path)
    if info is None:
        raise VerificationFailed(f"{path} is not on {store.where()}, although the extraction reported it done")
    problem = None
    if info.size != size:
        problem = f"{info.size} bytes on {store.where()}, the extraction reported {size}"
    elif (digest := store.sha256(path)) != sha256:
        problem = f"sha256 on {store.where()} is {digest}, the extraction reported {sha256}"
    if problem:
        store.delete(path)
        raise VerificationFailed(f"{path}: {problem}; the bad file was removed")


def read_manifest(store: StagingStore, path: str) -> ComponentManifest:
    try:
        return ComponentManifest.model_validate_json(store.read_bytes(path))
    except ValidationError as exc:
        raise StagingError(f"manifest {path} on {store.where()} is not valid: {exc}") from None


def write_manifest(store: StagingStore, directory: str, manifest: ComponentManifest) -> str:
    path = posixpath.join(directory, staging.manifest_name(manifest.component, manifest.generation))
    store.write_atomic(path, manifest.to_json())
    return path


def find_manifest(store: StagingStore, directory: str, component: str, generation: str) -> ComponentManifest | None:
    path = posixpath.join(directory, staging.manifest_name(component, generation))
    return read_manifest(store, path) if store.stat(path) else None


def _referenced(store: StagingStore, directory: str, listing: list[str]) -> set[str]:
    """Volume files named by any manifest in the directory (of any component)."""
    names: set[str] = set()
    for name in listing:
        if not staging.MANIFEST_RE.fullmatch(name):
            continue
        try:
            names.update(v.file_name for v in read_manifest(store, posixpath.join(directory, name)).volumes)
        except StagingError:
            # Unreadable: keep every file of its generation rather than guess.
            generation = staging.MANIFEST_RE.fullmatch(name)["generation"]  # type: ignore[index]
            names.update(n for n in listing if n.endswith(f"_{generation}.gz"))
    return names


def prune(store: StagingStore, directory: str, component: Component, current: str) -> list[str]:
    """Delete the component's generations beyond its retention, then the files of its volumes that
    no manifest names (failed or superseded runs, temporary files). Run only after `current` is
    fully verified and its manifest written. Returns the names deleted."""
    removed: list[str] = []
    for generation in staging.expired(store.listdir(directory), component.name, component.retention):
        if generation == current:
            continue
        # The manifest goes first: a crash later leaves unnamed files, which the sweep below removes.
        name = staging.manifest_name(component.name, generation)
        if store.delete(posixpath.join(directory, name)):
            removed.append(name)
    listing = store.listdir(directory)
    keep = _referenced(store, directory, listing)
    volsers = {v.volser for v in component.volumes}
    for name in listing:
        base = name.removesuffix(staging.TEMP_SUFFIX).removesuffix(RECORD_SUFFIX)
        match = staging.VOLUME_FILE_RE.fullmatch(base)
        if not match or match["volser"] not in volsers or match["generation"] == current or name in keep:
            continue
        if store.delete(posixpath.join(directory, name)):
            removed.append(name)
    return removed
