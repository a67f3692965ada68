"""SSH connections on paramiko: key authentication, host keys always verified, timeouts, keepalives.

A host whose key is not in the configured known_hosts file, or whose key differs from it, is an
error (`HostKeyError`); nothing is ever auto-accepted. One `SshSession` is one TCP connection;
`open_sftp()` gives a new SFTP channel on it. An SFTP client must not be shared between threads
(paramiko interleaves the replies and the stream is corrupted): open one per thread.
"""

from __future__ import annotations

import io
import logging
import select
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from infra import cancellation
from infra.secrets import Secret, resolve
from zimage.config import SshEndpoint
from zimage.examples import example_hint, is_example_host

STDERR_TAIL = 4096
STDOUT_LIMIT = 1 << 20


class _TracebacksToDebug(logging.Filter):
    """paramiko logs a failed connection at ERROR, its traceback one record per line; the caller
    gets the failure as an SshError with one clear line, so paramiko's records go to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)  # as if logged at DEBUG


for _name in ("paramiko", "paramiko.transport", "paramiko.transport.sftp"):
    logging.getLogger(_name).addFilter(_TracebacksToDebug())


class SshError(RuntimeError):
    """A failure talking to an SSH server. `retryable` says whether trying again may help."""

    retryable = True


class HostKeyError(SshError):
    retryable = False


class AuthError(SshError):
    retryable = False


class KeyFileError(SshError):
    retryable = False


class ConnectError(SshError):
    pass


class ConnectionLost(SshError):
    pass


class CommandTimeout(SshError):
    pass


@dataclass(frozen=True)
class Timeouts:
    connect: float = 15.0  # TCP connect, SSH banner, authentication
    read: float = 60.0  # one SFTP request or a channel open
    keepalive: int = 15  # seconds between keepalive packets on an idle connection


@dataclass(frozen=True)
class CommandResult:
    status: int
    stdout: bytes
    stderr_tail: bytes

    @property
    def stderr_text(self) -> str:
        return self.stderr_tail.decode("utf-8", "replace").strip()


def where(endpoint: SshEndpoint) -> str:
    return f"{endpoint.username}@{endpoint.host}:{endpoint.port}"


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _Reject(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"host key of {hostname} ({key.get_name()} {key.fingerprint}) is not in {self.known_hosts}; "
            "host keys are never accepted automatically: add it to that file (after checking it) and retry"
        )


# Host key algorithms by the key type a known_hosts line names.
_HOST_KEY_FAMILY = {
    "ssh-rsa": "rsa", "rsa-sha2-256": "rsa", "rsa-sha2-512": "rsa",
    "ssh-ed25519": "ed25519",
    "ecdsa-sha2-nistp256": "ecdsa", "ecdsa-sha2-nistp384": "ecdsa", "ecdsa-sha2-nistp521": "ecdsa",
}


def _disabled_host_key_algorithms(known_types: Iterable[str]) -> list[str]:
    """Offer only the host key types known_hosts holds for this host, so the server cannot pick
    another type and be reported as a mismatch."""
    families = {_HOST_KEY_FAMILY.get(t, t) for t in known_types}
    return [a for a in paramiko.Transport._preferred_keys if _HOST_KEY_FAMILY.get(a, a) not in families]


def load_private_key(endpoint: SshEndpoint) -> paramiko.PKey:
    """The endpoint's private key, from its file or its Prefect Secret block."""
    if endpoint.private_key_block:
        secret = resolve(block=endpoint.private_key_block, what=f"private key for {where(endpoint)}")
        return _key_from_text(secret, f"Prefect Secret block {endpoint.private_key_block!r}")
    if not endpoint.private_key_file:
        raise KeyFileError(f"{where(endpoint)}: no private_key_file or private_key_block configured")
    path = Path(endpoint.private_key_file).expanduser()
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise KeyFileError(f"private key file {path} for {where(endpoint)} does not exist") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise KeyFileError(f"private key file {path} for {where(endpoint)} cannot be loaded: {exc}") from None


def _key_from_text(secret: Secret, origin: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(secret.reveal()))
        except (paramiko.SSHException, ValueError):
            continue
    raise KeyFileError(f"{origin} does not hold an unencrypted Ed25519, ECDSA or RSA private key")


class SshSession:
    """One authenticated SSH connection. Close it (or use it as a context manager)."""

    def __init__(self, client: paramiko.SSHClient, endpoint: SshEndpoint, timeouts: Timeouts):
        self._client = client
        self.endpoint = endpoint
        self.timeouts = timeouts

    @property
    def transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLost(f"SSH connection to {where(self.endpoint)} is closed")
        return transport

    def open_sftp(self) -> paramiko.SFTPClient:
        """A new SFTP client on this connection, for one thread only."""
        try:
            # Packets as large as the reader's requests: fewer to decrypt and parse.
            sftp = paramiko.SFTPClient.from_transport(self.transport, window_size=8 << 20, max_packet_size=1 << 17)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(f"cannot open an SFTP channel to {where(self.endpoint)}: {exc}") from None
        if sftp is None:
            raise ConnectionLost(f"cannot open an SFTP channel to {where(self.endpoint)}")
        sftp.get_channel().settimeout(self.timeouts.read)
        return sftp

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run a shell command; wait at most `timeout` seconds. Keeps stdout (up to 1 MiB) and the
        tail of stderr. Raises CommandTimeout or ConnectionLost; a non-zero exit is returned."""
        try:
            channel = self.transport.open_session(timeout=self.timeouts.read)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(f"cannot start a command on {where(self.endpoint)}: {exc}") from None
        deadline = time.monotonic() + timeout
        stdout = bytearray()
        stderr = bytearray()
        try:
            while True:
                if channel.recv_ready():
                    data = channel.recv(65536)
                    if len(stdout) < STDOUT_LIMIT:
                        stdout += data[: STDOUT_LIMIT - len(stdout)]
                    continue
                if channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                    del stderr[:-STDERR_TAIL]
                    continue
                if channel.exit_status_ready():
                    break
                if channel.closed or not self.transport.is_active():
                    raise ConnectionLost(
                        f"connection to {where(self.endpoint)} dropped while running a command"
                        + (f"; stderr: {_tail(stderr)}" if stderr else "")
                    )
                cancellation.check(f"command on {where(self.endpoint)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommandTimeout(
                        f"command on {where(self.endpoint)} did not finish within {timeout:.0f} s"
                        + (f"; stderr: {_tail(stderr)}" if stderr else "")
                    )
                # The channel's fileno signals stdout data and closure; stderr is polled.
                select.select([channel], [], [], min(left, 0.2))
            # Drain what arrived together with the exit status.
            while channel.recv_ready():
                stdout += channel.recv(65536)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
            status = channel.recv_exit_status()
            if status < 0:  # paramiko's value when the channel closed without an exit status
                raise ConnectionLost(
                    f"connection to {where(self.endpoint)} dropped before the command reported its exit status"
                    + (f"; stderr: {_tail(stderr)}" if stderr else "")
                )
            return CommandResult(status, bytes(stdout[:STDOUT_LIMIT]), bytes(stderr[-STDERR_TAIL:]))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectionLost(f"connection to {where(self.endpoint)} failed during a command: {exc}") from None
        finally:
            channel.close()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SshSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail(data: bytes | bytearray, lines: int = 10) -> str:
    text = bytes(data).decode("utf-8", "replace").strip().splitlines()
    return " | ".join(text[-lines:])


def connect(
    endpoint: SshEndpoint,
    timeouts: Timeouts = Timeouts(),
    *,
    pkey: paramiko.PKey | None = None,
    use_default_keys: bool = False,
) -> SshSession:
    """Open an authenticated connection with the host key verified against endpoint.known_hosts_file.

    `use_default_keys` lets paramiko try ~/.ssh keys and an agent when the endpoint names no key
    (the extraction agent without --identity); the orchestrator always names its key.
    """
    known_hosts = Path(endpoint.known_hosts_file).expanduser()
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(known_hosts))
    except FileNotFoundError:
        raise HostKeyError(
            f"host key of {endpoint.host} cannot be verified: known_hosts file {known_hosts} does not exist"
        ) from None
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyError(f"host key of {endpoint.host}: cannot read known_hosts file {known_hosts}: {exc}") from None
    known = client.get_host_keys().lookup(_known_hosts_name(endpoint.host, endpoint.port))
    if pkey is None and (endpoint.private_key_file or endpoint.private_key_block or not use_default_keys):
        pkey = load_private_key(endpoint)
    client.set_missing_host_key_policy(_Reject(known_hosts))
    try:
        client.connect(
            endpoint.host,
            port=endpoint.port,
            username=endpoint.username,
            pkey=pkey,
            look_for_keys=pkey is None,
            allow_agent=pkey is None,
            timeout=timeouts.connect,
            banner_timeout=timeouts.connect,
            auth_timeout=timeouts.connect,
            channel_timeout=timeouts.read,
            disabled_algorithms={"keys": _disabled_host_key_algorithms(known.keys())} if known else None,
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"host key of {endpoint.host}:{endpoint.port} does not match {known_hosts}: the server offered "
            f"{exc.key.get_name()} {exc.key.fingerprint}, expected {exc.expected_key.fingerprint}. "
            "The server was re-keyed or this is not the host you think it is; nothing was sent"
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise AuthError(f"{where(endpoint)}: key authentication failed: {exc}") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        reached = client.get_transport()  # None when not even TCP connected
        client.close()
        if reached is not None and not reached.remote_version:
            # paramiko says "No existing session" or "Error reading SSH protocol banner" here
            why = (f"no SSH banner from {endpoint.host}:{endpoint.port} within {timeouts.connect:.0f} s: something "
                   "accepts connections there but does not speak SSH (or the server is overloaded)")
        elif isinstance(exc, TimeoutError):
            why = f"{where(endpoint)}: no answer within {timeouts.connect:.0f} s ({exc})"
        else:
            why = f"{where(endpoint)}: cannot connect: {exc}"
        error = ConnectError(why + example_hint(endpoint.host))
        if is_example_host(endpoint.host):
            error.retryable = False  # an example's name never leads to the user's system
        raise error from None
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(timeouts.keepalive)
    return SshSession(client, endpoint, timeouts)
