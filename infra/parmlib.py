"""Reading parmlib members (IEASYMxx, TCP/IP PROFILE, TCPDATA) from a source system.

A data set member is read over SSH with the z/OS UNIX shell's ``cat "//'SYS1.PARMLIB(IEASYM00)'"``;
an absolute path (a z/OS UNIX file, or a Linux host holding copies) with ``cat PATH``. A source
with transport ``local`` holds its members on this machine: absolute paths are read directly.
The bytes come back as they are (EBCDIC IBM-1047 or already converted): decoding is the checks'
business (``zimage.symbols.Member`` accepts bytes).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from infra import ssh
from zimage.config import Parmlib, Source

MEMBER_TIMEOUT = 60.0  # one small member; a hung catalog lookup must not hang the caller
MEMBER_LIMIT = ssh.STDOUT_LIMIT  # what one command's output may hold; a parmlib member is far smaller

# The config accepts the same form (zimage.config); checked again here because the name ends up
# in a shell command line and this module may be called with a name from elsewhere.
_QUALIFIER = r"[A-Z#@$][A-Z0-9#@$-]{0,7}"
_DATASET_MEMBER = re.compile(rf"{_QUALIFIER}(\.{_QUALIFIER})*\({_QUALIFIER}\)")

# Config key -> what the member is, for messages and reports.
KINDS: dict[str, str] = {"ieasym": "IEASYMxx", "tcpip_profile": "TCP/IP PROFILE", "tcpdata": "TCPDATA"}


class ParmlibError(RuntimeError):
    """A member cannot be read. `retryable` says whether trying again may help (a dropped
    connection may; a missing member or a refused host key will not)."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


def is_dataset_member(member: str) -> bool:
    return not member.startswith("/")


def member_command(member: str) -> str:
    """The shell command that prints `member` on the source.

    ``SYS1.PARMLIB(IEASYM00)`` -> ``cat "//'SYS1.PARMLIB(IEASYM00)'"``: the z/OS shell's cat opens
    ``//'DSN(MEMBER)'`` as a data set. Inside double quotes only ``$`` of the characters a data set
    name may hold is special, so it is escaped. A path is quoted as a single word.
    """
    if not is_dataset_member(member):
        if "\x00" in member:
            raise ValueError(f"path {member!r} holds a NUL character")
        return f"cat {shlex.quote(member)}"
    if not _DATASET_MEMBER.fullmatch(member):
        raise ValueError(
            f"{member!r} is not a data set member name such as 'SYS1.PARMLIB(IEASYM00)' (upper case, "
            "qualifiers of 1-8 characters A-Z 0-9 # @ $ -)"
        )
    return "cat \"//'" + member.replace("$", "\\$") + "'\""


def configured(parmlib: Parmlib) -> dict[str, str]:
    """The members a source's parmlib names, by config key (ieasym, tcpip_profile, tcpdata)."""
    return {key: value for key in KINDS if (value := getattr(parmlib, key)) is not None}


def missing(parmlib: Parmlib) -> list[str]:
    """Config keys of the members the source's parmlib does not name."""
    return [key for key in KINDS if getattr(parmlib, key) is None]


class MemberReader:
    """Reads members of one source; remote reads share one SSH connection, opened on first use.

    Use as a context manager (or call close()).
    """

    def __init__(self, source: Source, timeouts: ssh.Timeouts = ssh.Timeouts(), timeout: float = MEMBER_TIMEOUT):
        self.source = source
        self.timeouts = timeouts
        self.timeout = timeout
        self._session: ssh.SshSession | None = None

    def where(self) -> str:
        return "this machine" if self.source.transport == "local" else ssh.where(self.source)

    def connect(self) -> ssh.SshSession:
        """The connection to the source (opened now when not yet open): host key verified."""
        if self.source.transport == "local":
            raise ParmlibError(f"source {self.source.name} has transport local: there is no connection to open")
        if self._session is None:
            self._session = ssh.connect(self.source, self.timeouts)
        return self._session

    def read(self, member: str) -> bytes:
        """The raw bytes of `member`; ParmlibError names the source, the member and why."""
        try:
            command = member_command(member)
        except ValueError as exc:
            raise self._error(member, str(exc)) from None
        if self.source.transport == "local":
            return self._read_local(member)
        try:
            result = self.connect().run(command, self.timeout)
        except ssh.SshError as exc:
            raise self._error(member, str(exc), retryable=exc.retryable) from None
        if result.status != 0:
            stderr = result.stderr_text or "(no message on stderr)"
            raise self._error(member, f"`{command}` on {self.where()} exited with status {result.status}: {stderr}")
        if len(result.stdout) >= MEMBER_LIMIT:
            raise self._error(member, f"`{command}` printed {MEMBER_LIMIT:,} bytes or more; not a parmlib member")
        return result.stdout

    def _read_local(self, member: str) -> bytes:
        if is_dataset_member(member):
            raise self._error(member, "a data set member can be read only over SSH from z/OS; with transport "
                              "local give the member as an absolute path")
        path = Path(member)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise self._error(member, f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) >= MEMBER_LIMIT:
            raise self._error(member, f"{path} holds {len(data):,} bytes; not a parmlib member")
        return data

    def _error(self, member: str, why: str, retryable: bool = False) -> ParmlibError:
        return ParmlibError(f"source {self.source.name}: cannot read {member}: {why}", retryable)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_member(source: Source, member: str, timeouts: ssh.Timeouts = ssh.Timeouts()) -> bytes:
    """One member's raw bytes on a connection of its own."""
    with MemberReader(source, timeouts) as reader:
        return reader.read(member)
