"""Emulator hosts over SSH (DESIGN.md §15): the data mover run on the host, the short-lived pull key on
the storage server, and the relay through this machine when the host cannot reach the storage server.

The mover travels on the command's stdin (see `datamover.host.BOOTSTRAP`): nothing of the tool is
written on the host. For the direct path a fresh Ed25519 key pair is made per run; its public half is
authorised on the storage server in one `authorized_keys` line that allows only read-only SFTP
(`restrict`, `command="internal-sftp -R ..."`), only from the host's address, and only until an
expiry time; the private half reaches the host on stdin and lives there in an anonymous memory file.
The line is removed when the run ends, whatever happens; lines of runs that died are removed by the
next run (their process is gone, or their expiry passed).
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datamover.host import BOOTSTRAP
from datamover.package import build_zipapp
from infra import ssh
from infra.ledger import LedgerDocument
from zimage.config import Host, Storage

COMMAND_TIMEOUT = 30 * 24 * 3600.0  # a deploy of many TB; progress lines show it is alive
RELAY_CHUNK = 1 << 20
KEY_LIFETIME = timedelta(hours=1)  # only the connection's start needs it: the host opens one and keeps it
PULL_COMMAND = "internal-sftp -R -p open,close,read,stat,fstat,lstat"
_COMMENT = "zimage-pull"
_FIELD = re.compile(r"(\w+)=(\S+)")
_EXPIRY = re.compile(r'expiry-time="(\d{12,14})Z"')


class HostError(RuntimeError):
    """A failure on the host, with the mover's own message."""

    retryable = False


class NoPython(HostError):
    pass


class Unreachable(HostError):
    """The mover could not reach what it was sent to reach (the object store, from a storage server)."""


class MoverLost(HostError):
    """The mover ended without answering (killed, or the machine ran out of memory): another try
    resumes what it did."""

    retryable = True


def mover_command(host: Host, image: str) -> str:
    # the trailing words name the process on the host (ps shows them)
    return f"{shlex.quote(host.python)} -c {shlex.quote(BOOTSTRAP)} zimage-deploy-host {shlex.quote(image)}"


VolumeOpener = Callable[[str], tuple[BinaryIO, int]]


def run_mover(
    session: ssh.SshSession,
    host: Host,
    job: dict[str, Any],
    on_line: Callable[[str], None],
    open_volume: VolumeOpener | None = None,
) -> dict[str, Any]:
    """Run `datamover host` on the host with `job`; returns its result or raises HostError.

    `open_volume(file_name)` gives the bytes of a staged file for the relay (reader, size).
    """
    return run_job(
        session, host.python, f"host {host.name}", ssh.where(host), "hosts[].python", mover_command(host, job["image"]),
        job, on_line, open_volume,
    )


def run_job(
    session: ssh.SshSession,
    python: str,
    who: str,
    where: str,
    python_key: str,
    command: str,
    job: dict[str, Any],
    on_line: Callable[[str], None],
    open_volume: VolumeOpener | None = None,
) -> dict[str, Any]:
    """Send the whole mover and `job` to `command` (BOOTSTRAP under `python`) over `session`; the
    mover's stderr lines go to on_line; returns its result or raises HostError (NoPython when
    `python` does not run there)."""
    try:
        channel = session.transport.open_session(timeout=session.timeouts.read)
        channel.exec_command(command)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ssh.ConnectionLost(f"cannot start the data mover on {where}: {exc}") from None
    tail: list[str] = []

    def read_stderr() -> None:
        for raw in channel.makefile_stderr("rb"):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail[:] = [*tail, line][-20:]
            on_line(line)

    reader = threading.Thread(target=read_stderr, name="mover-stderr", daemon=True)
    reader.start()
    answer: dict[str, Any] | None = None
    try:
        zipapp = build_zipapp()  # the whole mover: hosts read and rewrite IEASYM members, servers upload
        try:
            channel.sendall(f"{len(zipapp)}\n".encode() + zipapp + json.dumps(job).encode() + b"\n")
        except OSError:
            # a command that ended at once (no such interpreter) closes stdin: its exit status tells why
            if not channel.exit_status_ready():
                raise
        for raw in channel.makefile("rb"):
            doc = json.loads(raw)
            if "need" in doc:
                _relay(channel, doc["need"], open_volume)
            else:
                answer = doc
                break
        status = channel.recv_exit_status()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ssh.ConnectionLost(f"connection to {where} failed while the mover ran: {exc}") from None
    finally:
        channel.close()
        reader.join(timeout=10)
    if answer is None:
        detail = " | ".join(t for t in tail if t.strip())[-800:]
        if status == 127 or "not found" in detail:
            raise NoPython(
                f"{who} ({where}): no Python 3 as {python!r} (exit status {status}: {detail}); install python3 (3.8 or "
                f"later) or set {python_key}"
            )
        raise MoverLost(f"{who}: the data mover ended without an answer (exit status {status}): {detail}")
    if "error" in answer:
        error = (Unreachable if answer.get("unreachable") else HostError)(f"{who}: {answer['error']}")
        error.retryable = answer.get("retryable") is True  # the mover's word: a mistake is not tried again
        raise error
    return answer["result"]


def _relay(channel: paramiko.Channel, file_name: str, open_volume: VolumeOpener | None) -> None:
    if open_volume is None:
        raise HostError(f"the host asked for {file_name} through the relay, but this run pulls directly")
    reader, size = open_volume(file_name)
    try:
        channel.sendall(json.dumps({"file": file_name, "bytes": size}).encode() + b"\n")
        sent = 0
        while sent < size:
            data = reader.read(min(RELAY_CHUNK, size - sent))
            if not data:
                raise HostError(f"relay: {file_name} ended after {sent} of {size} bytes")
            channel.sendall(data)
            sent += len(data)
    finally:
        reader.close()


# --- the short-lived pull key on the storage server -------------------------------------------------


def _authorized_keys_path(storage: Storage) -> str:
    # SFTP resolves relative paths from the login directory, which is what ~ means there
    path = storage.authorized_keys_file
    return path[2:] if path.startswith("~/") else path


def storage_known_hosts(storage: Storage) -> str:
    """The storage server's host key lines from this machine's known_hosts, for the host's ssh client."""
    known = paramiko.HostKeys()
    path = Path(storage.known_hosts_file).expanduser()
    try:
        known.load(str(path))
    except OSError as exc:
        raise ssh.HostKeyError(f"known_hosts file {path} cannot be read: {exc}") from None
    name = storage.host if storage.port == 22 else f"[{storage.host}]:{storage.port}"
    keys = known.lookup(name)
    if not keys:
        raise ssh.HostKeyError(f"no host key of the storage server {name} in {path}")
    return "".join(f"{name} {key.get_name()} {key.get_base64()}\n" for key in keys.values())


def _stale(line: str, now: datetime) -> bool:
    """A pull key line of a run that is over: its expiry passed, or its process on this machine is gone."""
    if _COMMENT not in line:
        return False
    expiry = _EXPIRY.search(line)
    if expiry and datetime.strptime(expiry.group(1)[:12], "%Y%m%d%H%M").replace(tzinfo=UTC) <= now:
        return True
    fields = dict(_FIELD.findall(line.split(_COMMENT, 1)[1]))
    try:
        owner = LedgerDocument(
            build_id=fields["run"],
            image=fields.get("image", "-"),
            pid=int(fields["pid"]),
            boot_id=fields.get("boot"),
            pid_started=fields.get("started"),
        )
    except (KeyError, ValueError):
        return False
    return owner.written_here() and not owner.process_alive()


class PullKey:
    """A key pair for one run, authorised on the storage server for read-only SFTP from one address."""

    def __init__(self, storage: Storage, from_address: str, image: str):
        if not re.fullmatch(r"[0-9A-Fa-f.:]+", from_address):
            raise HostError(f"{from_address!r} is not an address the storage server can restrict a key to")
        self.storage = storage
        key = Ed25519PrivateKey.generate()
        self.private_text = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        me = LedgerDocument.here(build_id=uuid.uuid4().hex[:12], image=image)
        self.run = me.build_id
        self.reaped = 0
        self.expires = datetime.now(UTC) + KEY_LIFETIME
        self._session: ssh.SshSession | None = None  # kept from authorising to removing: one handshake
        self.line = (
            f'restrict,from="{from_address}",expiry-time="{self.expires:%Y%m%d%H%M}Z",command="{PULL_COMMAND}" '
            f"{public.decode()} {_COMMENT} run={self.run} image={image} boot={me.boot_id} pid={me.pid} "
            f"started={me.pid_started}"
        )

    def _edit(self, change: Callable[[list[str]], list[str]], fresh: bool = False) -> list[str]:
        """Rewrite authorized_keys on the storage server (temporary file + rename; mode 0600); `fresh`:
        on a new connection (the kept one may have dropped during a long run)."""
        path = _authorized_keys_path(self.storage)
        if fresh or self._session is None:
            self.close()
            self._session = ssh.connect(self.storage)
        sftp = self._session.open_sftp()
        try:
            try:
                with sftp.open(path, "r") as f:
                    lines = f.read().decode().splitlines()
            except FileNotFoundError:
                lines = []
            new = change(lines)
            temp = f"{path}.zimage-{secrets.token_hex(4)}"
            with sftp.open(temp, "w") as f:
                f.write(("\n".join(new) + "\n").encode() if new else b"")
            sftp.chmod(temp, 0o600)
            sftp.posix_rename(temp, path)
        except (paramiko.SSHException, EOFError, ConnectionError, TimeoutError) as exc:
            raise ssh.ConnectionLost(f"storage server: cannot edit {path}: {exc}") from None
        finally:
            sftp.close()
        return new

    def authorise(self) -> int:
        """Add the line; returns how many lines of finished runs were removed on the way."""
        now = datetime.now(UTC)
        reaped = [0]

        def add(lines: list[str]) -> list[str]:
            kept = [line for line in lines if not _stale(line, now)]
            reaped[0] = len(lines) - len(kept)
            return [*kept, self.line]

        self._edit(add)
        return reaped[0]

    def remove(self, fresh: bool = False) -> None:
        self._edit(lambda lines: [line for line in lines if f"run={self.run} " not in line], fresh)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


@contextmanager
def pull_access(storage: Storage, from_address: str, image: str) -> Iterator[PullKey]:
    """The key authorised for the run; removed at the end however the run ends (on a new connection
    if the first removal fails: the kept one may have dropped with the run)."""
    key = PullKey(storage, from_address, image)
    try:
        key.reaped = key.authorise()
        try:
            yield key
        finally:
            try:
                key.remove()
            except ssh.SshError:
                key.remove(fresh=True)
    finally:
        key.close()


@contextmanager
def pulling_session(host: Host, storage: Storage, from_address: str, image: str) -> Iterator[
    tuple[ssh.SshSession, PullKey]
]:
    """A session to the host and the run's pull key on the storage server, the two connections
    made at the same time; the key is removed and the session closed however the run ends."""
    with ExitStack() as stack:
        with ThreadPoolExecutor(1, thread_name_prefix="host-connect") as pool:
            connecting = pool.submit(ssh.connect, host)
            try:
                key = stack.enter_context(pull_access(storage, from_address, image))
            except BaseException:
                if connecting.exception() is None:  # the storage server's error is the one to report
                    connecting.result().close()
                raise
        yield stack.enter_context(connecting.result()), key
