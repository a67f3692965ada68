"""zimage-extract: the reference extraction agent for sources that are not z/OS.

    zimage-extract --volume PATH --target sftp://USER@HOST:PORT/ABS/PATH [--identity KEY] [--known-hosts FILE]

Streams the volume through gzip to the target in constant memory, computing the sha256 of the
volume and of the gzip stream on the way. It writes `<target>.part` and renames it to the target
only when every byte is acknowledged, so a half-written file is never taken for a staged one.
On success it prints one JSON line: {"bytes", "gz_bytes", "sha256", "gz_sha256", ...}.
The target may also be a plain absolute path or file:///ABS/PATH (local staging, the demo).
Exit status: 0 done, 1 failed (message on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from zimage.staging import TEMP_SUFFIX

CHUNK = 1 << 20
QUEUE_DEPTH = 8  # compressed chunks waiting for the network: bounds memory


class AgentError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    path: str
    host: str | None = None  # None: a local path
    port: int = 22
    user: str | None = None

    @property
    def temp(self) -> str:
        return self.path + TEMP_SUFFIX


_SFTP_URL = re.compile(r"^sftp://(?P<user>[^@/]+)@(?P<host>[^:/]+|\[[0-9A-Fa-f:]+\])(:(?P<port>\d+))?(?P<path>/.*)$")


def parse_target(text: str) -> Target:
    if match := _SFTP_URL.fullmatch(text):
        port = int(match["port"] or 22)
        if not 1 <= port <= 65535:
            raise AgentError(f"target {text!r}: port {port} out of range")
        return Target(_absolute(unquote(match["path"]), text), match["host"].strip("[]"), port, unquote(match["user"]))
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise AgentError(f"target {text!r}: a file:// target must be on this machine")
        return Target(_absolute(unquote(parts.path), text))
    if text.startswith("/"):
        return Target(_absolute(text, text))
    raise AgentError(f"target {text!r}: expected sftp://USER@HOST:PORT/ABS/PATH, file:///ABS/PATH or /ABS/PATH")


def _absolute(path: str, text: str) -> str:
    if not path.startswith("/") or ".." in path.split("/") or path.endswith("/"):
        raise AgentError(f"target {text!r}: the path must be an absolute file path without '..'")
    return path


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self, expected_size: int) -> None: ...
    def abort(self) -> None: ...


class LocalSink:
    def __init__(self, target: Target):
        self.target = target
        self._file: BinaryIO = open(target.temp, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self, expected_size: int) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        size = os.stat(self.target.temp).st_size
        if size != expected_size:
            raise AgentError(f"{self.target.temp} holds {size} bytes after writing {expected_size}")
        os.replace(self.target.temp, self.target.path)

    def abort(self) -> None:
        self._file.close()
        Path(self.target.temp).unlink(missing_ok=True)


class SftpSink:
    def __init__(self, target: Target, identity: str | None, known_hosts: str):
        from infra import ssh  # paramiko only when pushing over the network
        from zimage.config import SshEndpoint

        self.target = target
        endpoint = SshEndpoint(
            host=target.host or "", port=target.port, username=target.user or "",
            private_key_file=identity, known_hosts_file=known_hosts,
        )
        self._session = ssh.connect(endpoint, use_default_keys=identity is None)
        self._sftp = self._session.open_sftp()
        self._file = self._sftp.open(target.temp, "wb")
        # Acknowledgements are collected in the background; errors surface at close.
        self._file.set_pipelined(True)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self, expected_size: int) -> None:
        self._file.close()
        size = self._sftp.stat(self.target.temp).st_size
        if size != expected_size:
            raise AgentError(f"{self.target.temp} holds {size} bytes after writing {expected_size}")
        self._sftp.posix_rename(self.target.temp, self.target.path)
        self._session.close()

    def abort(self) -> None:
        # The write already failed: closing may fail too; removing the temp file matters more.
        with contextlib.suppress(Exception):
            self._file.close()
        try:
            self._sftp.remove(self.target.temp)
        finally:
            self._session.close()


@dataclass
class Report:
    bytes: int
    gz_bytes: int
    sha256: str
    gz_sha256: str
    seconds: float
    target: str

    def json_line(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))


def stream(
    source: BinaryIO, sink: Sink, *, level: int = 6, max_rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int, str, str]:
    """Compress `source` into `sink`; returns (bytes, gz_bytes, sha256, gz_sha256).

    Compression runs here while a writer thread sends: zlib and the network overlap.
    """
    raw_digest, gz_digest = hashlib.sha256(), hashlib.sha256()
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip wrapper
    pending: queue.Queue[bytes | None] = queue.Queue(QUEUE_DEPTH)
    failure: list[BaseException] = []

    def send() -> None:
        while (data := pending.get()) is not None:
            if failure:
                continue  # drain so the producer never blocks on a dead writer
            try:
                sink.write(data)
            except BaseException as exc:
                failure.append(exc)

    writer = threading.Thread(target=send, name="sink-writer", daemon=True)
    writer.start()
    raw = gz = 0
    began = time.monotonic()

    def put(data: bytes) -> None:
        nonlocal gz
        if data:
            gz_digest.update(data)
            gz += len(data)
            pending.put(data)

    try:
        while block := source.read(CHUNK):
            if failure:
                break
            raw_digest.update(block)
            raw += len(block)
            put(compressor.compress(block))
            if progress:
                progress(raw)
            if max_rate:
                # Pace the read so the average stays under max_rate bytes/s.
                ahead = raw / max_rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        if not failure:
            put(compressor.flush())
    finally:
        pending.put(None)
        writer.join()
    if failure:
        raise AgentError(f"writing the compressed volume failed: {failure[0]}") from failure[0]
    return raw, gz, raw_digest.hexdigest(), gz_digest.hexdigest()


def extract(volume: Path, target: Target, *, identity: str | None, known_hosts: str,
            level: int = 6, max_rate: float | None = None) -> Report:
    began = time.monotonic()
    try:
        source = open(volume, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise AgentError(f"cannot read volume {volume}: {exc.strerror}") from None
    with source:
        sink: Sink = SftpSink(target, identity, known_hosts) if target.host else LocalSink(target)
        try:
            raw, gz, sha, gz_sha = stream(source, sink, level=level, max_rate=max_rate)
            sink.commit(gz)
        except BaseException:
            try:
                sink.abort()
            except Exception as cleanup:
                print(f"zimage-extract: warning: could not remove {target.temp}: {cleanup}", file=sys.stderr)
            raise
    return Report(raw, gz, sha, gz_sha, round(time.monotonic() - began, 3), target.path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zimage-extract",
        description="Compress a volume image with gzip and push it to the staging server; print one JSON line.",
    )
    parser.add_argument("--volume", required=True, type=Path, help="the volume image file")
    parser.add_argument("--target", required=True, help="sftp://USER@HOST:PORT/ABS/PATH, file:///ABS/PATH or /ABS/PATH")
    parser.add_argument("--identity", help="private key for the storage server (default: ~/.ssh keys, agent)")
    parser.add_argument("--known-hosts", default="~/.ssh/known_hosts", help="host keys of the storage server")
    parser.add_argument("--level", type=int, default=6, choices=range(1, 10), metavar="1-9", help="gzip level")
    parser.add_argument("--max-rate", type=float, help="read at most this many MB/s (spare a shared link)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        target = parse_target(args.target)
        report = extract(
            args.volume, target, identity=args.identity, known_hosts=args.known_hosts,
            level=args.level, max_rate=args.max_rate * 1e6 if args.max_rate else None,
        )
    except Exception as exc:
        print(f"zimage-extract: error: {exc}", file=sys.stderr)
        return 1
    print(report.json_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
